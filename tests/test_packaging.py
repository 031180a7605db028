"""The package as users install it: declared dependencies that admit the pinned set, every
subpackage and the shipped configs in the wheel, and the installed `p2p-jax` command run from
an empty directory."""

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import cv2
import numpy as np
import pytest
import tomllib
from packaging.requirements import Requirement

from p2p_jax.config import shipped
from p2p_jax.errors import UserError
from tests.helpers import xla_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins(path: pathlib.Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    return pins


def _declared() -> list[Requirement]:
    project = PYPROJECT["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras
            if not r.startswith("p2p_jax")]


def test_declared_ranges_admit_the_pinned_set():
    pins = _pins(REPO / "requirements.txt") | _pins(REPO / "requirements-nodeps.txt")
    for requirement in _declared():
        name = requirement.name.lower()
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])


def test_the_wheel_lists_every_subpackage():
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "p2p_jax").rglob("__init__.py")}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == found | {"p2p_jax.configs"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"p2p_jax.configs": "configs"}


def test_shipped_configs_by_name():
    assert set(shipped.names()) >= {"facades", "cityscapes_hd", "tiny", "default"}
    path, _, variant = shipped.resolve("cityscapes_hd:local").partition(":")
    assert pathlib.Path(path) == REPO / "configs" / "cityscapes_hd.py" and variant == "local"
    assert shipped.resolve("configs/facades.py") == "configs/facades.py"  # A path stays one.
    assert shipped.resolve("./facades") == "./facades"
    with pytest.raises(UserError, match="no shipped config 'facadez'; the shipped ones are "):
        shipped.resolve("facadez")


def test_a_config_extends_its_sibling_from_a_copied_folder(tmp_path):
    """A user's copy of configs/ keeps working: pix2pixhd.py reads the cityscapes_hd.py beside
    it, not the shipped one."""
    shutil.copytree(REPO / "configs", tmp_path / "mine")
    hd = tmp_path / "mine" / "cityscapes_hd.py"
    hd.write_text(hd.read_text().replace("def get_config(", "MARK = 1\n\n\ndef get_config("))
    module = shipped.sibling(str(tmp_path / "mine" / "pix2pixhd.py"), "pix2pixhd")
    assert module.cityscapes_hd.MARK == 1
    assert module.get_config().dataset.source == "pix2pixhd"


@pytest.mark.slow
def test_installed_wheel_runs_from_an_empty_directory(tmp_path):
    """Build the wheel from the tracked sources, install it (not editable) into a fresh
    environment whose dependencies are this one's, and run `p2p-jax` where no checkout is."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for folder in ("p2p_jax", "configs"):
        shutil.copytree(REPO / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel, = (tmp_path / "dist").glob("p2p_jax-*.whl")
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    # The dependencies: this environment's packages, as pip would have installed them.
    pathlib.Path(site.stdout.strip(), "dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)

    work = tmp_path / "empty"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(P2P_JAX_HUGEPAGE_MALLOC="0", XLA_FLAGS=xla_flags(4))

    def p2p_jax(*args):
        result = subprocess.run([str(env_dir / "bin" / "p2p-jax"), *args], cwd=work, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        return result

    where = subprocess.run([str(python), "-c", "import p2p_jax; print(p2p_jax.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(env_dir)), where.stdout

    p2p_jax("--config=tiny", "--config.num_train_steps=3", "--config.eval_every_steps=3",
            "--config.export.formats=('stablehlo','torch')")
    run = work / "workdirs" / "tiny"
    assert (run / "config.json").is_file() and (run / "checkpoints" / "3").is_dir()
    cv2.imwrite(str(work / "in.png"), np.full((32, 32, 3), 127, np.uint8))
    p2p_jax("--workdir=workdirs/tiny", "--mode=predict", "--input=in.png", "--output=out")
    assert cv2.imread(str(work / "out" / "in.png")).shape == (32, 32, 3)
    p2p_jax("--workdir=workdirs/tiny", "--mode=eval")
    assert list((run / "eval").glob("*_00000003/metrics.json"))
    p2p_jax("--workdir=workdirs/tiny", "--mode=export", "--output=exported")
    assert {p.name for p in (work / "exported").iterdir()} >= {
        "generator.stablehlo", "generator.pth", "generator.safetensors", "README.md"}

