"""scripts/results.sh, the script behind docs/results.md, runs end to end: each task trains,
is evaluated on its held-out split, and leaves its labelled contact sheet and a metrics row
(output and input baseline) behind."""

import os
import subprocess
import sys

import numpy as np
import pytest

from p2p_jax.data import images
from tests.helpers import xla_flags

pytestmark = pytest.mark.slow  # A task trained and evaluated through the CLI.


def test_results_script_writes_the_sheet_and_metrics_row(tmp_path):
    small = ("--config.model.generator=unet --config.model.num_downs=5 --config.model.ngf=8 "
             "--config.model.ndf=8 --config.batch_size=2 --config.eval.batch_size=4")
    env = {**os.environ, "XLA_FLAGS": xla_flags(2), "PYTHON": sys.executable,
           "OUT": str(tmp_path / "sheets"), "SIZE": "32",
           "CAMVID": str(tmp_path / "no_camvid"), "OUTLINES": str(tmp_path / "no_outlines"),
           "EXTRA": small}
    done = subprocess.run(["bash", "scripts/results.sh", str(tmp_path / "work"), "2",
                           "colorization", "labels_to_photo", "outlines_to_photo"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "labels_to_photo skipped: no CamVid pairs in" in done.stderr
    assert "outlines_to_photo skipped: no outline pairs in" in done.stderr
    table = done.stdout.strip().splitlines()
    assert table[0].startswith("| task | images | L1 |") and len(table) == 3
    cells = table[2].strip("| ").split(" | ")
    assert cells[:2] == ["colorization", "21"]  # Every held-out tile.
    assert len(cells) == 13 and all(np.isfinite(float(c)) for c in cells[2:12])
    wins, images_scored = map(int, cells[12].split("/"))
    assert images_scored == 21 and 0 <= wins <= 21
    sheet = images.read(str(tmp_path / "sheets" / "colorization.png"))
    assert sheet.shape[0] >= 128 and (sheet[:22] < 128).any()  # Labelled columns.
