"""Image metrics against scikit-image and TensorFlow, and full-size padded evaluation."""

import jax
import numpy as np
import pytest
import skimage.data
import skimage.metrics
import tensorflow as tf

from p2p_jax.data import images, pipeline
from p2p_jax.eval import metrics
from p2p_jax.models.translate import Translator
from p2p_jax.train import state as train_state
from tests.helpers import write_aligned


@pytest.fixture(scope="module")
def photo_pair():
    """A real photograph and a degraded copy (blur + noise), [0, 1], 192x184 (TF's MS-SSIM
    needs 176 px or more)."""
    clean = images.resize(skimage.data.astronaut(), 192, 184).astype(np.float32) / 255
    rng = np.random.default_rng(0)
    blurred = (clean + np.roll(clean, 1, 0) + np.roll(clean, 1, 1)) / 3
    noisy = np.clip(blurred + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    return clean, noisy


def test_l1_psnr_ssim_match_scikit_image(photo_pair):
    x, y = photo_pair
    batch_x, batch_y = jax.numpy.asarray(x[None]), jax.numpy.asarray(y[None])
    np.testing.assert_allclose(metrics.l1(batch_x, batch_y)[0], np.abs(x - y).mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics.psnr(batch_x, batch_y)[0],
                               skimage.metrics.peak_signal_noise_ratio(x, y, data_range=1),
                               rtol=1e-4)
    want = skimage.metrics.structural_similarity(
        x, y, data_range=1, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False)
    np.testing.assert_allclose(metrics.ssim(batch_x, batch_y)[0], want, atol=2e-5)
    assert metrics.ssim(batch_x, batch_x)[0] == pytest.approx(1.0, abs=1e-5)


def test_ms_ssim_matches_tensorflow(photo_pair):
    x, y = photo_pair
    want = tf.image.ssim_multiscale(x[None], y[None], max_val=1.0).numpy()[0]
    got = metrics.ms_ssim(jax.numpy.asarray(x[None]), jax.numpy.asarray(y[None]))[0]
    np.testing.assert_allclose(got, want, atol=1e-4)
    small = jax.numpy.zeros((1, 64, 64, 3))
    with pytest.raises(ValueError, match="at least 161x161"):
        metrics.ms_ssim(small, small)
    assert set(metrics.image_metrics(small, small)) == {"l1", "psnr", "ssim"}


def test_full_size_evaluation_pads_and_crops_back(tiny_config, devices):
    """Odd sizes (not multiples of 32) go through whole, in groups of equal size."""
    setup = train_state.build(tiny_config, devices=devices[:2])
    mesh, state = setup.mesh, setup.state
    rng = np.random.default_rng(0)
    sizes = [(40, 56), (40, 56), (33, 70)]
    examples = [{"A": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                 "B": rng.integers(0, 256, (h, w, 3), dtype=np.uint8)} for h, w in sizes]
    translator = Translator(setup.recipe.generator, mesh, 2, 2**tiny_config.model.num_downs,
                            score=metrics.image_metrics)
    variables = state.generator_variables()
    outputs, scores = translator.generate(variables, examples, jax.random.PRNGKey(0))
    assert [o.shape[:2] for o in outputs] == sizes and outputs[0].dtype == np.uint8
    assert np.isfinite(scores["l1"]).all() and np.isfinite(scores["ssim"]).all()
    # The padded rows/columns never leak into the cropped output: same image, same output.
    alone, _ = translator.generate(variables, examples[2:], jax.random.PRNGKey(0))
    np.testing.assert_allclose(alone[0], outputs[2], atol=1)
    np.testing.assert_allclose(scores["l1"][0],
                               np.abs(outputs[0] / 255 - (examples[0]["B"] / 255)).mean(),
                               atol=3e-3)  # Output rounding to uint8.


def test_eval_examples_keep_full_size_without_resizing(tmp_path, tiny_config):
    write_aligned(tmp_path / "train", 2, 40, 112)
    write_aligned(tmp_path / "val", 2, 40, 112)
    tiny_config.dataset.source, tiny_config.dataset.path = "aligned", str(tmp_path)
    tiny_config.dataset.preprocess = "none"
    examples = pipeline.eval_examples(tiny_config)
    assert [e["A"].shape for e in examples] == [(40, 56, 3)] * 2
    assert [e["name"] for e in examples] == ["0.png", "1.png"]
    tiny_config.dataset.preprocess = "resize_and_crop"
    assert pipeline.eval_examples(tiny_config, 1)[0]["A"].shape == (32, 32, 3)
