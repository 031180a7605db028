"""Scientific images: any channel count and pixel type, read, mapped, trained on, predicted,
exported and written without loss."""

import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tifffile

from configs import fluorescence
from p2p_jax import checkpointing
from p2p_jax.config.checks import check_resolved_data
from p2p_jax.data import images, pipeline, tasks, values
from p2p_jax.errors import ConfigError
from p2p_jax.models import generation, tiles
from p2p_jax.serving import export, predict, restore
from p2p_jax.train import loop as trainer
from tests.helpers import fixed_schedule


def _data(dtype: str, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return rng.normal(0, 100, (9, 13, channels)).astype(np.float32)  # Any values.
    return rng.integers(0, np.iinfo(dtype).max + 1, (9, 13, channels), dtype=dtype)


@pytest.mark.parametrize("extension,dtype,channels", [
    *[(ext, dtype, channels) for ext in (".tif", ".npy")
      for dtype in ("uint8", "uint16", "float32") for channels in (1, 2, 3, 6)],
    *[(".png", dtype, channels) for dtype in ("uint8", "uint16") for channels in (1, 3)]])
def test_every_format_dtype_and_channel_count_round_trips_exactly(extension, dtype, channels):
    image = _data(dtype, channels)
    assert images.holds(extension, image)
    decoded = images.decode(images.encode(image, extension), f"x{extension}")
    assert decoded.dtype == image.dtype
    np.testing.assert_array_equal(decoded, image)


def test_tiff_pages_and_planar_samples_become_channels():
    stack = _data("uint16", 5)
    pages = io.BytesIO()
    tifffile.imwrite(pages, np.moveaxis(stack, -1, 0), photometric="minisblack")  # 5 pages.
    np.testing.assert_array_equal(images.decode(pages.getvalue(), "pages.tif"), stack)
    planar = io.BytesIO()
    tifffile.imwrite(planar, np.moveaxis(stack[..., :3], -1, 0), photometric="rgb",
                     planarconfig="separate")
    np.testing.assert_array_equal(images.decode(planar.getvalue(), "planar.tif"),
                                  stack[..., :3])
    as_int16 = io.BytesIO()  # Signed CT values: held as float32, unchanged.
    tifffile.imwrite(as_int16, np.array([[-1000, 3000]], np.int16))
    decoded = images.decode(as_int16.getvalue(), "ct.tif")
    assert decoded.dtype == np.float32 and decoded[0, :, 0].tolist() == [-1000.0, 3000.0]


def test_unusable_data_files_are_bad_images_naming_the_file():
    with pytest.raises(images.BadImageError, match=r"o.npy: a .npy image is a numeric"):
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        images.decode(buffer.getvalue(), "o.npy")  # A pickle never runs.
    with pytest.raises(images.BadImageError, match=r"v.npy: not a readable .npy file"):
        images.decode(images.encode(np.zeros((2, 2, 1), np.uint8), ".npy")[:-4], "v.npy")
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(4, np.float32))
    with pytest.raises(images.BadImageError, match=r"1d.npy: .*\(4,\)"):
        images.decode(buffer.getvalue(), "1d.npy")
    big = io.BytesIO()
    np.save(big, np.zeros((20, 20, 1), np.uint8))
    with pytest.raises(images.BadImageError, match="over dataset.max_image_pixels=100"):
        images.decode(big.getvalue(), "big.npy", max_pixels=100)
    with pytest.raises(images.BadImageError, match=r"x: 6 channels, but this side of the "
                                                   r"model takes 3"):
        images.to_channels(_data("uint16", 6), 3, "x")


def test_conversions_keep_what_the_values_mean():
    eight = np.array([[[0], [128], [255]]], np.uint8)
    np.testing.assert_array_equal(images.convert(eight, "uint16", "x")[..., 0],
                                  [[0, 128 * 257, 65535]])
    np.testing.assert_allclose(images.convert(eight, "float32", "x")[..., 0],
                               [[0, 128 / 255, 1]], rtol=1e-7)
    np.testing.assert_array_equal(
        images.convert(images.convert(eight, "uint16", "x"), "uint8", "x"), eight)
    with pytest.raises(images.BadImageError, match="x: float32 values in a uint16 dataset"):
        images.convert(np.zeros((1, 1, 1), np.float32), "uint16", "x")
    assert images.lossless_extension(".jpg", _data("uint16", 1)) == ".png"
    assert images.lossless_extension(".png", _data("uint16", 2)) == ".tif"
    assert images.lossless_extension(".npy", _data("float32", 2)) == ".npy"
    assert images.lossless_extension(".jpg", _data("uint8", 3)) == ".jpg"


@pytest.mark.parametrize("value_map", [
    values.ValueMap("uint16", (412.5, 90.0), (30123.0, 65000.0)),  # Percentiles, per channel.
    values.ValueMap("uint16", (0.0,), (65535.0,)),
    values.ValueMap("uint8", (0.0,), (255.0,))])
def test_a_target_round_trips_through_its_value_map_exactly(value_map):
    target = _data(value_map.dtype, 2, seed=3)
    floats = generation.to_float(jnp.asarray(target), value_map)
    back = np.asarray(generation.to_data(floats, value_map))
    assert back.dtype == target.dtype
    np.testing.assert_array_equal(back, target)
    low, high = np.asarray(value_map.low), np.asarray(value_map.high)
    np.testing.assert_allclose(floats, 2 * (target - low) / (high - low) - 1, atol=2e-6)


def test_photos_map_as_the_reference_does():
    """uint8 photos: x / 127.5 - 1 in, and back to the same rounding, bit for bit."""
    pixels = jnp.arange(256, dtype=jnp.uint8).reshape(1, 16, 16, 1)
    np.testing.assert_array_equal(generation.to_float(pixels, values.UINT8),
                                  pixels.astype(jnp.float32) / 127.5 - 1.0)
    floats = jnp.linspace(-1.2, 1.2, 999)
    np.testing.assert_array_equal(
        generation.to_data(floats, values.UINT8),
        jnp.clip(jnp.round((floats + 1.0) * 127.5), 0, 255).astype(jnp.uint8))


def test_percentile_ranges_are_per_channel_and_never_empty():
    rng = np.random.default_rng(0)
    stack = [np.stack([rng.normal(1000, 50, (20, 20)), np.full((20, 20), 7.0)], -1)
             .astype(np.float32) for _ in range(3)]
    low, high = values.percentile_range(stack, (1.0, 99.0))
    every = np.concatenate([s.reshape(-1, 2) for s in stack])
    np.testing.assert_allclose(low[0], np.percentile(every[:, 0], 1.0), rtol=1e-6)
    np.testing.assert_allclose(high[0], np.percentile(every[:, 0], 99.0), rtol=1e-6)
    assert (low[1], high[1]) == (7.0, 8.0)  # A constant channel: maps to -1, no division by 0.
    preview = values.preview(np.stack(stack)[0], values.ValueMap("float32", low, high))
    assert preview.dtype == np.uint8 and preview.shape == (20, 20, 3)  # Green/magenta.


def test_the_fluorescence_task_blurs_sums_and_adds_noise_in_the_images_type(tiny_config):
    clean = np.zeros((32, 32, 2), np.uint16)
    clean[12:20, 12:20] = 40000
    derived = tiny_config.dataset.derived
    view = tasks.fluorescence(clean, np.random.default_rng(0), derived)
    assert view.shape == (32, 32, 1) and view.dtype == np.uint16
    assert view[16, 16, 0] > 15000 and view[0, 0, 0] < 3000  # Blurred signal, dark corners.
    again = tasks.fluorescence(clean, np.random.default_rng(1), derived)
    assert not np.array_equal(view, again)  # Fresh noise every draw.


def test_losses_and_evaluators_that_take_rgb_photos_refuse_other_data(tiny_config):
    config = tiny_config
    config.dataset.input_channels, config.dataset.output_channels = 1, 2
    config.dataset.input_dtype = config.dataset.output_dtype = "uint16"
    config.loss.lambda_vgg = 10.0
    with pytest.raises(ConfigError, match="loss.lambda_vgg: the VGG loss sees RGB photos; "
                                          "these targets have 2 channels: set "
                                          "loss.lambda_vgg=0"):
        check_resolved_data(config)
    config.loss.lambda_vgg = 0.0
    config.eval.evaluators = ("inception",)
    with pytest.raises(ConfigError, match="'inception' scores 8-bit RGB photos; these "
                                          "targets are 2-channel uint16"):
        check_resolved_data(config)
    config.eval.evaluators = ()
    config.eval.preview_channels = (0, 1, 5)
    with pytest.raises(ConfigError, match=r"eval.preview_channels=\(0, 1, 5\)"):
        check_resolved_data(config)


def _float_fluorescence(tiny_config):
    """The fluorescence task, tiny, float32 in and out (1 -> 2 channels)."""
    config = fluorescence.get_config()
    for key in ("batch_size", "log_every_steps", "sample_every_steps", "num_sample_images",
                "checkpoint_every_steps", "eval_every_steps"):
        config[key] = tiny_config[key]
    config.model.num_downs, config.model.ngf, config.model.ndf = 5, 8, 8
    config.dataset.num_train, config.dataset.num_eval = 16, 3
    config.dataset.load_size, config.dataset.image_size = 40, 32
    config.dataset.input_dtype = config.dataset.output_dtype = "float32"
    config.dataset.normalize.sample = 8
    config.eval.num_examples = config.eval.batch_size = 4
    config.loss.r1_gamma = 0.0
    return config


@pytest.mark.slow
def test_a_fluorescence_run_trains_resumes_evaluates_predicts_and_exports_in_its_data(
        tiny_config, tmp_path, monkeypatch):
    import onnxruntime

    config = _float_fluorescence(tiny_config)
    interrupted, straight = str(tmp_path / "interrupted"), str(tmp_path / "straight")
    trainer.train_and_evaluate(fixed_schedule(config.copy_and_resolve_references(), 3),
                               interrupted)
    trainer.train_and_evaluate(fixed_schedule(config.copy_and_resolve_references(), 6),
                               interrupted)
    trainer.train_and_evaluate(fixed_schedule(config.copy_and_resolve_references(), 6),
                               straight)
    jax.tree.map(np.testing.assert_array_equal, checkpointing.load_train_state(interrupted),
                 checkpointing.load_train_state(straight))

    # The input's percentiles, computed once over the training sample, are in config.json.
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())["dataset"]
    sample = [images.convert(a, "float32", "a") for a in pipeline._sampled(config, None, 16)["A"]]
    low, high = values.percentile_range(sample, (0.1, 99.9))
    assert saved["normalize"]["input_low"] == pytest.approx(list(low))
    assert saved["normalize"]["input_high"] == pytest.approx(list(high))
    assert saved["normalize"]["output_high"] == [1.0] and saved["output_channels"] == 2

    # Eval scores in the data's range: PSNR's peak is the targets' high - low (float32: 1).
    periodic = json.loads((tmp_path / "straight" / "eval" / "periodic.json").read_text())
    assert 5 < periodic[-1]["metrics"]["psnr"] < 60
    from p2p_jax.eval import scoring
    from p2p_jax.models.generation import host_key
    trained = restore.restore(config, straight)
    examples = pipeline.eval_examples(trained.config, 2)
    outputs, scores, _ = scoring.evaluate(
        scoring.scoring_translator(trained.generator, trained.mesh, trained.config),
        trained.variables, examples, host_key(0))
    for output, example, psnr in zip(outputs, examples, scores["psnr"], strict=True):
        assert output.dtype == np.float32 and output.shape[-1] == 2
        mse = np.mean((output.astype(np.float64) - example["B"]) ** 2)
        assert psnr == pytest.approx(10 * np.log10(1.0 / mse), abs=1e-3)

    # Predict reads the saved mapping (never the data again) and writes float32, 2 channels.
    monkeypatch.setattr(pipeline, "_sampled", lambda *a: pytest.fail("read the data again"))
    from p2p_jax.config.saved import saved_config
    model = restore.restore(saved_config(straight), straight)
    view = pipeline.eval_examples(model.config, 1)[0]["A"]
    assert view.dtype == np.float32 and view.shape[-1] == 1
    images.write(tmp_path / "in" / "cells.tif", view[:32, :32])
    predict.predict(model, predict.list_inputs(str(tmp_path / "in"), str(tmp_path / "out")))
    predicted = images.read(str(tmp_path / "out" / "cells.tif"))
    assert predicted.dtype == np.float32 and predicted.shape == (32, 32, 2)

    # ONNX and StableHLO take and return the data's dtype and channels, and equal predict.
    model.config.export.formats = ("onnx", "stablehlo")
    portable = restore.restore(model.config, straight, conv_impl="xla")
    out = export.export(portable, str(tmp_path / "export"), straight)
    assert "inputs 1-channel float32, outputs 2-channel float32" in (out / "README.md").read_text()
    session = onnxruntime.InferenceSession(str(out / "generator.onnx"))
    served = session.run(None, {"images": view[None, :32, :32]})[0]
    assert served.dtype == np.float32 and served.shape == (1, 32, 32, 2)
    np.testing.assert_allclose(served[0], predicted, atol=1e-5)
    key = np.asarray(jax.random.key_data(jax.random.PRNGKey(0)), np.uint32)
    stablehlo = export.load_stablehlo(str(out))(view[None, :32, :32], key)
    assert stablehlo.dtype == np.float32
    np.testing.assert_allclose(stablehlo[0], predicted, atol=1e-5)
    assert os.path.exists(out / "config.json")


def test_serve_shows_a_preview_and_offers_the_output_in_its_own_type(tiny_config, tmp_path):
    """A 1 -> 2 channel uint16 model (initial weights): warm-up takes its input type, the
    page shows an 8-bit RGB preview and the download is the 16-bit two-channel output."""
    from p2p_jax.models.generation import TrainedGenerator
    from p2p_jax.serving import app
    from p2p_jax.train import state as train_state

    config = _float_fluorescence(tiny_config)
    config.dataset.input_dtype = config.dataset.output_dtype = "uint16"
    setup = train_state.build(config, devices=jax.devices()[:1])
    trained = TrainedGenerator(setup.config, setup.mesh, setup.recipe.generator,
                               setup.state.generator_variables(), 0)
    requests = app.Requests(trained)
    app.warm_up(requests, 32, 32)  # A 1-channel uint16 input, not an RGB canvas.
    upload = _data("uint16", 1)[:, :, :1]
    shown, _, download = app._run(requests, lambda: requests.example(upload), str(tmp_path))
    preview, full = images.read(shown), images.read(download)
    assert preview.dtype == np.uint8 and preview.shape == (9, 13, 3)
    assert download.endswith(".tif") and full.dtype == np.uint16 and full.shape == (9, 13, 2)
    np.testing.assert_array_equal(full, requests.translate(requests.example(upload)))


def test_tiles_blend_data_in_its_own_type():
    """16-bit and float outputs through overlapping tiles equal the whole-image result."""
    for dtype in ("uint16", "float32"):
        image = _data(dtype, 2, seed=5)
        out = tiles.translate_tiled(image, 8, 2, lambda pieces, first: [p[..., ::-1]
                                                                         for p in pieces])
        assert out.dtype == image.dtype
        np.testing.assert_allclose(out, image[..., ::-1], rtol=1e-6)


@pytest.mark.parametrize("generator", ["unet", "resnet_6blocks", "global", "local"])
def test_every_generator_family_takes_any_channel_count_in_and_out(tiny_config, generator):
    from p2p_jax.models.build import build_generator

    config = tiny_config
    config.model.generator, config.model.ngf = generator, 4
    config.model.n_downsample_global, config.model.n_blocks_global = 2, 1
    config.model.n_blocks_local = 1
    network = build_generator(config, 5, "xla")
    x = jnp.zeros((1, 32, 32, 6))
    variables = network.init(jax.random.PRNGKey(0), x, train=False)
    assert network.apply(variables, x, train=False).shape == (1, 32, 32, 5)
