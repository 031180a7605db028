"""Losses against values computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from p2p_jax.train import losses

REAL = jnp.array([2.0, -1.0])
FAKE = jnp.array([0.5, -3.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_vanilla_is_binary_cross_entropy_with_logits():
    real, fake = losses.discriminator_loss("vanilla", REAL, FAKE)
    # BCE(l, 1) = softplus(-l); BCE(l, 0) = softplus(l).
    assert real == pytest.approx((softplus(-2.0) + softplus(1.0)) / 2, rel=1e-6)
    assert fake == pytest.approx((softplus(0.5) + softplus(-3.0)) / 2, rel=1e-6)
    g = losses.generator_gan_loss("vanilla", FAKE)
    assert g == pytest.approx((softplus(-0.5) + softplus(3.0)) / 2, rel=1e-6)


def test_lsgan_is_mean_squared_error():
    real, fake = losses.discriminator_loss("lsgan", REAL, FAKE)
    assert real == pytest.approx(((2 - 1) ** 2 + (-1 - 1) ** 2) / 2)  # 2.5
    assert fake == pytest.approx((0.5**2 + 3.0**2) / 2)  # 4.625
    assert losses.generator_gan_loss("lsgan", FAKE) == pytest.approx((0.25 + 16) / 2)


def test_hinge():
    real, fake = losses.discriminator_loss("hinge", REAL, FAKE)
    assert real == pytest.approx((0 + 2.0) / 2)  # relu(1 - 2), relu(1 + 1)
    assert fake == pytest.approx((1.5 + 0) / 2)  # relu(1 + 0.5), relu(1 - 3)
    assert losses.generator_gan_loss("hinge", FAKE) == pytest.approx(1.25)


def test_l1_and_bad_mode():
    a = jnp.array([[0.0, 1.0], [-1.0, 0.5]])
    b = jnp.array([[0.5, 1.0], [1.0, 0.0]])
    assert losses.l1_loss(a, b) == pytest.approx((0.5 + 0 + 2 + 0.5) / 4)
    assert losses.l1_loss(a.astype(jnp.bfloat16), b).dtype == np.float32
    with pytest.raises(ValueError, match="loss.gan_mode"):
        losses.discriminator_loss("wgan", REAL, FAKE)
