"""Workdirs written before generation moved beside the networks (tests/data/compat, made by
tests/data/make_compat_fixtures.py at commit cd165d5) still predict bit for bit, evaluate,
serve, export and resume; a pix2pixHD workdir does all of it with its VGG19 file gone, and
exports to ONNX."""

import os
import shutil

import numpy as np
import pytest

from p2p_jax import checkpointing
from p2p_jax.config.saved import saved_config
from p2p_jax.data import images
from p2p_jax.eval import report
from p2p_jax.serving import app as serve_app
from p2p_jax.serving import export, predict, restore
from p2p_jax.train import loop
from tests.helpers import write_cityscapes

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "compat")


def copied(run, tmp_path):
    """A copy of a fixture run: every mode writes into its workdir (lock, reports)."""
    workdir = tmp_path / run
    shutil.copytree(os.path.join(FIXTURES, run), workdir)
    return str(workdir)


@pytest.mark.parametrize("run", ["unet", "hd"])
def test_predict_outputs_are_bit_identical_to_before(run, tmp_path, devices):
    """On one device, as the fixtures were made: the U-Net with per-image statistics and
    dropout, the pix2pixHD generator on label maps (the CPU lookup form)."""
    workdir = copied(run, tmp_path)
    trained = restore.restore(saved_config(workdir), workdir, devices=devices[:1])
    inputs = os.path.join(FIXTURES, f"{run}_inputs")
    count = predict.predict(trained, predict.list_inputs(inputs, str(tmp_path / "out")))
    names = sorted(os.listdir(inputs))
    assert count == len(names)
    for name in names:
        np.testing.assert_array_equal(
            images.read(str(tmp_path / "out" / name)),
            images.read(os.path.join(FIXTURES, f"{run}_outputs", name)), err_msg=name)


@pytest.mark.slow
def test_pix2pixhd_workdir_needs_no_vgg_file_to_evaluate_serve_and_export(tmp_path, devices):
    """Inference restores the generator alone: the VGG19 weights the run trained with (a
    training loss) are gone, and so are the discriminator and optimizer from memory."""
    workdir = copied("hd", tmp_path)
    config = saved_config(workdir)
    assert config.loss.lambda_vgg and not os.path.exists(config.loss.vgg_weights)
    trained = restore.restore(config, workdir, devices=devices[:1])
    assert set(vars(trained.variables)) == {"params", "batch_stats"}

    data = write_cityscapes(tmp_path / "cityscapes", "val", frames=2, height=32, width=64)
    with_data = config.copy_and_resolve_references()
    with_data.dataset.path = str(data)
    folder = report.evaluate_checkpoint(restore.restore(with_data, workdir, devices=devices[:1]),
                                        workdir)
    assert (folder / "index.html").exists()

    requests = serve_app.Requests(trained)
    ids = images.read(os.path.join(FIXTURES, "hd_inputs", "frame.png"))
    np.testing.assert_array_equal(requests.translate(requests.example(ids)),
                                  images.read(os.path.join(FIXTURES, "hd_outputs", "frame.png")))

    # ONNX over a dynamic batch of label maps (it could not convert the one-hot split of
    # codes into ids and boundaries before): what predict wrote, up to float rounding.
    import onnxruntime

    config.export.formats = ("stablehlo", "onnx")
    out = export.export(restore.restore(config, workdir, conv_impl="xla",
                                        devices=devices[:1]), str(tmp_path / "export"), workdir)
    assert (out / "generator.stablehlo").exists()
    session = onnxruntime.InferenceSession(str(out / "generator.onnx"))
    assert session.get_inputs()[0].shape[0] == "batch"
    ids = ids.reshape(ids.shape[:2])
    two = np.stack([ids, np.zeros_like(ids)], -1)[None].repeat(2, axis=0)
    served = session.run(None, {"images": two})[0]
    want = images.read(os.path.join(FIXTURES, "hd_outputs", "frame.png"))
    assert np.abs(served.astype(int) - want).max() <= 1


@pytest.mark.slow
def test_unet_workdir_resumes_training(tmp_path, devices):
    workdir = copied("unet", tmp_path)
    config = saved_config(workdir)
    before = checkpointing.load_train_state(workdir)
    config.num_train_steps = 3  # Its schedule decayed to 0 at step 2: one constant step more.
    config.optimizer.constant_steps = 3
    loop.train_and_evaluate(config, workdir, devices=devices[:1])
    after = checkpointing.load_train_state(workdir)
    assert int(before["step"]) == 2 and int(after["step"]) == 3
    assert not np.array_equal(before["g_params"]["down_0"]["kernel"],
                              after["g_params"]["down_0"]["kernel"])
