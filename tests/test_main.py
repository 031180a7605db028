"""End to end: the trainer writes checkpoints, summaries and samples, and resumes exactly."""

import glob
import json
import os

import jax
import numpy as np
from PIL import Image

from p2p_jax import checkpointing
from p2p_jax.train import loop as trainer
from tests.helpers import fixed_schedule


def test_train_writes_outputs_and_resumes_exactly(tiny_config, tmp_path):
    interrupted, straight = str(tmp_path / "interrupted"), str(tmp_path / "straight")
    trainer.train_and_evaluate(fixed_schedule(tiny_config, 6), interrupted)

    assert sorted(os.listdir(os.path.join(interrupted, "checkpoints"))) == ["3", "6"]
    assert glob.glob(os.path.join(interrupted, "events.out.tfevents.*"))
    samples = sorted(glob.glob(os.path.join(interrupted, "samples", "*.png")))
    assert [os.path.basename(s) for s in samples] == ["step_00000003.png", "step_00000006.png"]
    with Image.open(samples[-1]) as grid:  # 2 rows of input | generated | target.
        assert grid.size == (3 * 32 + 4, 2 * 32 + 2)
    with open(os.path.join(interrupted, "config.json")) as f:
        assert json.load(f)["model"]["generator"] == "unet"

    # Restarting with a longer run resumes at step 6 (state, RNG, optimizer and data position).
    resumed = trainer.train_and_evaluate(fixed_schedule(tiny_config, 8), interrupted)
    assert int(jax.device_get(resumed.step)) == 8
    uninterrupted = trainer.train_and_evaluate(fixed_schedule(tiny_config, 8), straight)

    a = checkpointing.load_train_state(interrupted)
    b = checkpointing.load_train_state(straight)
    assert int(a["step"]) == int(b["step"]) == 8
    jax.tree.map(np.testing.assert_array_equal, a, b)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.g_params),
                 jax.device_get(uninterrupted.g_params))
