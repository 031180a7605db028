"""The code base passes ruff (pinned in requirements.txt, configured in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path


def test_ruff_passes():
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run([str(ruff), "check", "."], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
