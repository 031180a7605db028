"""GAN, reconstruction, feature-matching and perceptual losses, computed in float32.

A discriminator's output is either its logits (the reference's PatchGANs) or, for
pix2pixHD's multi-scale discriminator, one list per scale of every layer's output, the last
being the logits. GAN losses are means per scale, summed over the scales (pix2pixHD's
GANLoss, whose lambda_feat = 10 balance assumes the sum).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from p2p_jax.config.choices import GAN_MODES

# pix2pixHD's weights of the VGG19 relu1_1 .. relu5_1 features.
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

DiscriminatorOutput = jax.Array | list[list[jax.Array]]


def scales(output: DiscriminatorOutput) -> list[list[jax.Array]]:
    """Every discriminator's output as a list of scales of layer outputs."""
    return [[output]] if isinstance(output, jax.Array) else output


def _logits(output: DiscriminatorOutput) -> list[jax.Array]:
    return [scale[-1].astype(jnp.float32) for scale in scales(output)]


def _discriminator_scale(gan_mode: str, real: jax.Array, fake: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
    if gan_mode == "vanilla":
        return (optax.sigmoid_binary_cross_entropy(real, jnp.ones_like(real)).mean(),
                optax.sigmoid_binary_cross_entropy(fake, jnp.zeros_like(fake)).mean())
    if gan_mode == "lsgan":
        return jnp.mean((real - 1.0) ** 2), jnp.mean(fake**2)
    if gan_mode == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real)), jnp.mean(jax.nn.relu(1.0 + fake))
    raise ValueError(f"loss.gan_mode={gan_mode!r} is not one of {GAN_MODES}")


def discriminator_loss(gan_mode: str, real_output: DiscriminatorOutput,
                       fake_output: DiscriminatorOutput) -> tuple[jax.Array, jax.Array]:
    """Returns (loss on real pairs, loss on fake pairs), each summed over the scales; the
    reference's D loss is 0.5 * their sum."""
    terms = [_discriminator_scale(gan_mode, real, fake)
             for real, fake in zip(_logits(real_output), _logits(fake_output), strict=True)]
    return sum(t[0] for t in terms), sum(t[1] for t in terms)


def _generator_scale(gan_mode: str, fake: jax.Array) -> jax.Array:
    if gan_mode == "vanilla":
        return optax.sigmoid_binary_cross_entropy(fake, jnp.ones_like(fake)).mean()
    if gan_mode == "lsgan":
        return jnp.mean((fake - 1.0) ** 2)
    if gan_mode == "hinge":
        return -jnp.mean(fake)
    raise ValueError(f"loss.gan_mode={gan_mode!r} is not one of {GAN_MODES}")


def generator_gan_loss(gan_mode: str, fake_output: DiscriminatorOutput) -> jax.Array:
    """The generator's adversarial loss, summed over the scales: make D call fakes real."""
    return sum(_generator_scale(gan_mode, fake) for fake in _logits(fake_output))


def r1_penalty(discriminate_real, real: jax.Array) -> jax.Array:
    """R1 (Mescheder et al. 2018): the mean over examples of the squared norm of the gradient of
    D's logits (summed over patches and scales) with respect to the real image;
    `discriminate_real(image)` is D's output on the pairs with that image."""
    def total(image):
        return sum(logits.sum() for logits in _logits(discriminate_real(image)))

    grad = jax.grad(total)(real).astype(jnp.float32)
    return jnp.mean(jnp.sum(grad**2, axis=tuple(range(1, grad.ndim))))


def l1_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(prediction.astype(jnp.float32) - target.astype(jnp.float32)))


def feature_matching(fake_output: DiscriminatorOutput,
                     real_output: DiscriminatorOutput) -> jax.Array:
    """pix2pixHD's GAN feature matching: the L1 between D's layer outputs on fake and (fixed)
    real pairs, every layer but the logits, weighted 4 / (n_layers + 1) per layer and
    1 / num_D per scale (n_layers + 1 is the number of such layers)."""
    fake, real = scales(fake_output), scales(real_output)
    total = 0.0
    for fake_scale, real_scale in zip(fake, real, strict=True):
        layers = len(fake_scale) - 1
        for f, r in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            total += (1.0 / len(fake)) * (4.0 / layers) * l1_loss(f, jax.lax.stop_gradient(r))
    return total


def perceptual(fake_features: list[jax.Array], real_features: list[jax.Array]) -> jax.Array:
    """pix2pixHD's VGG loss: sum of w_i * L1(VGG_i(fake), VGG_i(real)) over relu1_1..relu5_1,
    the real features fixed."""
    return sum(w * l1_loss(f, jax.lax.stop_gradient(r))
               for w, f, r in zip(VGG_WEIGHTS, fake_features, real_features, strict=True))
