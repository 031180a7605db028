"""The download helper without a network: --dry_run, and a file:// mirror serving tiny fake
archives and weights; damaged or hostile downloads leave nothing behind."""

import io
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

import pytest

from p2p_jax.data import download
from p2p_jax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "torch_models"


def _archive(path: pathlib.Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_dry_run_prints_what_and_where_and_writes_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "p2p_jax.data.download", "--dataset=facades", "--dry_run",
         f"--output={tmp_path / 'datasets'}"], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert ("would fetch http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz"
            in result.stdout)
    assert (f"python -m p2p_jax.main --config=facades --config.dataset.path="
            f"{tmp_path / 'datasets' / 'facades'}") in result.stdout
    assert not (tmp_path / "datasets").exists()
    unknown = subprocess.run([sys.executable, "-m", "p2p_jax.data.download", "--model=faces"],
                             cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == ("error: --model=faces: unknown; one of facades_label2photo, "
                                      "sat2map, map2sat, edges2shoes, day2night")


def test_a_dataset_from_a_mirror_is_extracted_and_the_next_command_printed(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _archive(mirror / "edges2handbags.tar.gz",
             {f"edges2handbags/train/{i}_AB.jpg": b"jpeg" for i in range(8)}
             | {"edges2handbags/val/1_AB.jpg": b"jpeg"})
    output = tmp_path / "datasets"
    message = download.download_dataset("edges2handbags", output, mirror.as_uri(), False)
    assert sorted(p.name for p in (output / "edges2handbags" / "train").iterdir())[0] == "0_AB.jpg"
    # 15 epochs of the 8 pairs at batch 4, the paper's schedule for this dataset.
    assert message.endswith(f"--config.dataset.path={output / 'edges2handbags'} --workdir="
                            "workdirs/edges2handbags --config.batch_size=4 "
                            "--config.num_train_steps=30")
    assert [p.name for p in output.iterdir()] == ["edges2handbags"]  # No scratch left.
    again = download.download_dataset("edges2handbags", output, mirror.as_uri(), False)
    assert "is already there" in again


@pytest.mark.parametrize("members,message", [
    ({"../escape.txt": b"x", "facades/train/1.jpg": b"x"}, "not a usable dataset archive"),
    ({"facades/readme.txt": b"x"}, "the archive holds no facades/train/ folder"),
])
def test_hostile_or_wrong_archives_leave_nothing(tmp_path, members, message):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _archive(mirror / "facades.tar.gz", members)
    with pytest.raises(UserError, match=message):
        download.download_dataset("facades", tmp_path / "datasets", mirror.as_uri(), False)
    assert not (tmp_path / "datasets").exists() and not (tmp_path / "escape.txt").exists()
    with pytest.raises(UserError, match=r"could not fetch .*maps.tar.gz"):
        download.download_dataset("maps", tmp_path / "datasets", mirror.as_uri(), False)


def test_a_published_generator_is_checked_then_placed_as_the_reference_places_it(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(FIXTURES / "unet_batch_dropout.pth", mirror / "map2sat.pth")
    (mirror / "sat2map.pth").write_bytes(b"<html>404 Not Found</html>")
    output = tmp_path / "checkpoints"
    message = download.download_model("map2sat", output, mirror.as_uri(), False)
    placed = output / "map2sat_pretrained" / "latest_net_G.pth"
    assert placed.read_bytes() == (FIXTURES / "unet_batch_dropout.pth").read_bytes()
    assert (f"--config=maps --config.dataset.direction=BtoA --mode=import --input={placed} "
            "--workdir=workdirs/map2sat") in message
    with pytest.raises(UserError, match="sat2map.pth: not a usable PyTorch state_dict"):
        download.download_model("sat2map", output, mirror.as_uri(), False)
    assert sorted(p.name for p in output.iterdir()) == ["map2sat_pretrained"]
