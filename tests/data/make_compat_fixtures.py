"""Makes tests/data/compat/: workdirs trained by the code as it was at commit cd165d5 (before
generation moved beside the networks and inference restored the generator alone), with the
outputs that code's --mode=predict wrote for a few inputs. test_compat checks that today's
code still resumes, predicts, evaluates and serves them, with predict's outputs bit-identical.

  JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1 \\
    .venv/bin/python tests/data/make_compat_fixtures.py

Two runs, both on one CPU device, one checkpoint each:
- `unet`: configs/tiny.py narrowed (ngf=ndf=4), the default model's family (U-Net, PatchGAN,
  dropout at test time), on the synthetic scenes.
- `hd`: a pix2pixHD-shaped run (global generator, label maps with instance boundaries,
  multiscale discriminator, feature matching and a VGG loss whose weights file is gone).
"""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers import write_cityscapes, write_png, write_vgg19_weights  # noqa: E402

OUT = ROOT / "tests" / "data" / "compat"
COMMON = ["--config.num_train_steps=2", "--config.checkpoint_every_steps=2",
          "--config.checkpoint.max_to_keep=1", "--config.log_every_steps=1",
          "--config.sample_every_steps=100", "--config.eval_every_steps=100",
          "--config.model.ngf=4", "--config.model.ndf=4", "--config.batch_size=2"]


def main(argv: list[str]) -> None:
    python = sys.executable
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    scratch = OUT.parent / "compat_scratch"
    shutil.rmtree(scratch, ignore_errors=True)

    def run(*args):
        subprocess.run([python, "-m", "p2p_jax.main", *args], cwd=ROOT, env=env, check=True)

    # U-Net on the synthetic scenes; inputs of the trained size and of an odd size.
    run("--config=configs/tiny.py", f"--workdir={OUT / 'unet'}", *COMMON)
    rng = np.random.default_rng(0)
    inputs = OUT / "unet_inputs"
    write_png(inputs / "a.png", rng.integers(0, 256, (32, 32, 3), np.uint8))
    write_png(inputs / "b.png", rng.integers(0, 256, (40, 24, 3), np.uint8))
    run(f"--workdir={OUT / 'unet'}", "--mode=predict", f"--input={inputs}",
        f"--output={OUT / 'unet_outputs'}")

    # pix2pixHD-shaped, from a tiny Cityscapes release and random VGG19 weights.
    write_cityscapes(scratch, "train", frames=2, height=32, width=64)
    write_cityscapes(scratch, "val", frames=1, height=32, width=64, seed=1)
    vgg = write_vgg19_weights(scratch / "vgg19.pth")
    run("--config=configs/cityscapes_hd.py", f"--workdir={OUT / 'hd'}", *COMMON,
        f"--config.dataset.path={scratch}", f"--config.loss.vgg_weights={vgg}",
        "--config.dataset.image_size=(32, 64)", "--config.dataset.load_size=64",
        "--config.model.n_downsample_global=2", "--config.model.n_blocks_global=1",
        "--config.dtype=float32", "--config.eval.batch_size=1", "--config.eval.num_examples=1",
        "--config.num_sample_images=1")
    labels = OUT / "hd_inputs"
    ids = np.full((32, 64), 23, np.uint8)
    ids[16:] = 7
    ids[20:26, 10:20] = 26
    write_png(labels / "frame.png", ids)
    run(f"--workdir={OUT / 'hd'}", "--mode=predict", f"--input={labels}",
        f"--output={OUT / 'hd_outputs'}")
    shutil.rmtree(scratch)  # The data and the VGG weights file go: the workdir must not need them.
    for run_dir in (OUT / "unet", OUT / "hd"):  # What a later run writes anew.
        for extra in [*run_dir.glob("events.out.*"), run_dir / ".lock"]:
            extra.unlink()
        shutil.rmtree(run_dir / "samples", ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
