"""`model.chroma`: colour from the gray input's lightness and two predicted chroma channels."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from p2p_jax.errors import ConfigError
from p2p_jax.models import color
from p2p_jax.models.resnet import ResnetGenerator
from p2p_jax.models.unet import UNetGenerator


def _photo_rgb(seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (2, 8, 8, 3)).astype(np.float32)


def test_lab_to_rgb_inverts_opencv():
    rgb = _photo_rgb()
    lab = cv2.cvtColor(rgb.reshape(-1, 8, 3), cv2.COLOR_RGB2LAB).reshape(rgb.shape)
    back = color.lab_to_rgb(jnp.asarray(lab[..., :1] / 50.0 - 1.0),
                            jnp.asarray(lab[..., 1:] / color.AB_RANGE))
    np.testing.assert_allclose((np.asarray(back) + 1.0) / 2.0, rgb, atol=3e-3)  # < 1/255.


def test_ycbcr_to_rgb_inverts_itu_r_601_luma():
    rgb = _photo_rgb(1)
    y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    cb, cr = (rgb[..., 2] - y) / 1.772, (rgb[..., 0] - y) / 1.402
    back = color.ycbcr_to_rgb(jnp.asarray(2.0 * y[..., None] - 1.0),
                              jnp.asarray(2.0 * np.stack([cb, cr], -1)))
    np.testing.assert_allclose((np.asarray(back) + 1.0) / 2.0, rgb, atol=1e-5)


@pytest.mark.parametrize("space", ["ycbcr", "lab"])
def test_zero_chroma_is_the_gray_of_the_input_and_gradients_stay_finite(space):
    lightness = jnp.linspace(-1.0, 1.0, 16).reshape(1, 4, 4, 1)
    gray = np.asarray(color.chroma_output(space, lightness, jnp.zeros((1, 4, 4, 2))))
    np.testing.assert_allclose(gray[..., 0], gray[..., 1], atol=1e-5)
    np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-5)
    if space == "ycbcr":
        np.testing.assert_allclose(gray[..., :1], lightness, atol=1e-6)
    else:  # L* 50 is sRGB 119 (OpenCV's own conversion of gray 119 gives L* 50.0).
        middle = color.chroma_output(space, jnp.zeros((1, 1, 1, 1)), jnp.zeros((1, 1, 1, 2)))
        assert abs(float((middle[0, 0, 0, 0] + 1) * 127.5) - 119.0) < 0.6
    grads = jax.grad(lambda ab: color.chroma_output(space, lightness, ab).sum())(
        jnp.zeros((1, 4, 4, 2)))
    assert np.isfinite(np.asarray(grads)).all()


@pytest.mark.parametrize("network", [UNetGenerator(num_downs=5, ngf=8, dropout_rate=0.0),
                                     ResnetGenerator(num_blocks=1, ngf=8, dropout_rate=0.0)],
                         ids=["unet", "resnet"])
def test_a_chroma_generator_keeps_the_input_lightness(network):
    """Its last layer has two channels; its RGB output's luma is the gray input's (where no
    channel clips)."""
    gray = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1), minval=-0.3, maxval=0.3)
    chroma = network.clone(chroma="ycbcr")
    variables = chroma.init({"params": jax.random.key(0)}, gray, train=False)
    outputs = [leaf.shape[-1] for path, leaf in
               jax.tree_util.tree_leaves_with_path(variables["params"]) if path[-1].key == "kernel"]
    assert outputs.count(2) == 1 and 3 not in outputs  # ngf 8: only the last layer has 2.
    out = np.asarray(chroma.apply(variables, gray, train=False))
    assert out.shape == (2, 32, 32, 3)
    unclipped = (np.abs(out) < 1.0).all(-1)
    luma = out @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(luma[unclipped], np.asarray(gray)[..., 0][unclipped], atol=1e-5)
    with pytest.raises(ConfigError, match="colours a one-channel input, not 3 channels: set "
                                          "dataset.input_channels=1"):
        chroma.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)), train=False)


def test_colorization_config_predicts_chroma_and_its_reference_variant_does_not():
    from configs import colorization
    from p2p_jax.config.checks import validate_config

    config = colorization.get_config()
    assert config.model.chroma == "ycbcr"
    assert colorization.get_config("reference").model.chroma == "none"
    validate_config(config)
    config.dataset.derived.color_space = "lab"
    with pytest.raises(ConfigError, match="does not match the input's lightness .* set "
                                          "model.chroma=lab"):
        validate_config(config)
    config.model.chroma = "lab"
    validate_config(config)
    config.model.generator = "global"
    with pytest.raises(ConfigError, match="model.chroma='lab' is for the U-Net and ResNet"):
        validate_config(config)
