"""GAN and reconstruction losses. All reductions are means, computed in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from p2p_jax.choices import GAN_MODES


def discriminator_loss(gan_mode: str, real_logits: jax.Array,
                       fake_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns (loss on real pairs, loss on fake pairs); the reference's D loss is 0.5 * sum."""
    real, fake = real_logits.astype(jnp.float32), fake_logits.astype(jnp.float32)
    if gan_mode == "vanilla":
        return (optax.sigmoid_binary_cross_entropy(real, jnp.ones_like(real)).mean(),
                optax.sigmoid_binary_cross_entropy(fake, jnp.zeros_like(fake)).mean())
    if gan_mode == "lsgan":
        return jnp.mean((real - 1.0) ** 2), jnp.mean(fake**2)
    if gan_mode == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real)), jnp.mean(jax.nn.relu(1.0 + fake))
    raise ValueError(f"loss.gan_mode={gan_mode!r} is not one of {GAN_MODES}")


def generator_gan_loss(gan_mode: str, fake_logits: jax.Array) -> jax.Array:
    """The generator's adversarial loss: make D call the fake pairs real."""
    fake = fake_logits.astype(jnp.float32)
    if gan_mode == "vanilla":
        return optax.sigmoid_binary_cross_entropy(fake, jnp.ones_like(fake)).mean()
    if gan_mode == "lsgan":
        return jnp.mean((fake - 1.0) ** 2)
    if gan_mode == "hinge":
        return -jnp.mean(fake)
    raise ValueError(f"loss.gan_mode={gan_mode!r} is not one of {GAN_MODES}")


def l1_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(prediction.astype(jnp.float32) - target.astype(jnp.float32)))
