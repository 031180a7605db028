"""End to end: the trainer writes checkpoints, summaries and samples, and resumes exactly."""

import glob
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from p2p_jax import checkpointing
from p2p_jax.serving import restore
from p2p_jax.train import loop as trainer
from tests.helpers import fixed_schedule


@pytest.mark.slow
def test_train_writes_outputs_and_resumes_exactly(tiny_config, tmp_path):
    """With the recipe's additions on (the generator's moving average, D's own rate, the best
    checkpoints), which resume exactly too; inference then reads the average."""
    interrupted, straight = str(tmp_path / "interrupted"), str(tmp_path / "straight")
    tiny_config.model.ema_decay = 0.9
    tiny_config.optimizer.d_learning_rate = 4e-4
    tiny_config.checkpoint.best_metric = "eval/psnr"
    mirrored = tiny_config.copy_and_resolve_references()  # Also to W&B (offline): same run.
    mirrored.wandb.enabled, mirrored.wandb.mode = True, "offline"
    trainer.train_and_evaluate(fixed_schedule(mirrored, 6), interrupted)

    assert sorted(os.listdir(os.path.join(interrupted, "checkpoints"))) == ["3", "6"]
    assert glob.glob(os.path.join(interrupted, "events.out.tfevents.*"))
    samples = sorted(glob.glob(os.path.join(interrupted, "samples", "*.png")))
    assert [os.path.basename(s) for s in samples] == ["step_00000003.png", "step_00000006.png"]
    with Image.open(samples[-1]) as grid:  # 2 rows of input | generated | target.
        assert grid.size == (3 * 32 + 4, 2 * 32 + 2)
    with open(os.path.join(interrupted, "config.json")) as f:
        assert json.load(f)["model"]["generator"] == "unet"

    # Restarting with a longer run resumes at step 6 (state, RNG, optimizer and data position).
    resumed = trainer.train_and_evaluate(fixed_schedule(mirrored, 8), interrupted)
    assert int(jax.device_get(resumed.step)) == 8
    with open(os.path.join(interrupted, "wandb_run_id")) as f:
        run_id = f.read().strip()
    launches = sorted(glob.glob(os.path.join(interrupted, "wandb", f"offline-run-*-{run_id}")))
    assert len(launches) == 2  # The resumed launch continues the same W&B run.
    for launch in launches:  # Each mirrors its scalars and sample grids.
        with open(os.path.join(launch, f"run-{run_id}.wandb"), "rb") as f:
            history = f.read()
        assert b"train/g_loss" in history and b"eval/l1" in history
        assert glob.glob(os.path.join(launch, "files", "media", "images", "samples", "*.png"))
    uninterrupted = trainer.train_and_evaluate(fixed_schedule(tiny_config, 8), straight)

    a = checkpointing.load_train_state(interrupted)
    b = checkpointing.load_train_state(straight)
    assert int(a["step"]) == int(b["step"]) == 8
    jax.tree.map(np.testing.assert_array_equal, a, b)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.g_params),
                 jax.device_get(uninterrupted.g_params))
    assert a["ema_params"] and not np.array_equal(a["ema_params"]["down_0"]["kernel"],
                                                  a["g_params"]["down_0"]["kernel"])

    # Inference restores the average; --step=best the best-scoring checkpoint's.
    latest = restore.restore(tiny_config, straight)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(latest.variables.params),
                 b["ema_params"])
    with open(os.path.join(straight, "eval", "periodic.json")) as f:
        periodic = json.load(f)
    best_step = max(periodic, key=lambda r: r["metrics"]["psnr"])["step"]
    best = restore.restore(tiny_config, straight, "best")
    assert best.step == best_step
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(best.variables.params),
                 checkpointing.load_train_state(straight, best_step)["ema_params"])
