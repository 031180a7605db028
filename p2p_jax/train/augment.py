"""Differentiable augmentation of the pairs the discriminator sees (DiffAugment, Zhao et al.
2020), so that a few hundred training pairs (facades has 400) do not let D memorise them.

Each step draws one transform per example and applies it to the real pair and the fake pair
alike, and to both images of a pair: translation and cutout move or blank the condition and the
image together; colour changes the image (the real target or the generator's output), never
the condition, which may be a label map. Every operation is differentiable, so the generator
learns through it; the generator itself never sees augmented data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from p2p_jax.config.choices import AUGMENTATIONS

TRANSLATION_RATIO = 0.125  # Shifts of up to 1/8 of each side, zero-filled.
CUTOUT_RATIO = 0.5  # A blanked rectangle of half of each side.


def _colour(image: jax.Array, key: jax.Array) -> jax.Array:
    """Brightness, saturation and contrast, each by a random amount per example ([-1, 1]
    images, as DiffAugment's rand_brightness, rand_saturation, rand_contrast)."""
    n = image.shape[0]
    brightness, saturation, contrast = jax.random.uniform(key, (3, n, 1, 1, 1), image.dtype)
    image = image + (brightness - 0.5)
    mean = image.mean(axis=-1, keepdims=True)
    image = (image - mean) * (saturation * 2.0) + mean
    mean = image.mean(axis=(1, 2, 3), keepdims=True)
    return (image - mean) * (contrast + 0.5) + mean


def _translation(pair: jax.Array, key: jax.Array) -> jax.Array:
    n, height, width, _ = pair.shape
    dy, dx = round(height * TRANSLATION_RATIO), round(width * TRANSLATION_RATIO)
    ky, kx = jax.random.split(key)
    shift_y = jax.random.randint(ky, (n,), -dy, dy + 1)
    shift_x = jax.random.randint(kx, (n,), -dx, dx + 1)
    padded = jnp.pad(pair, ((0, 0), (dy, dy), (dx, dx), (0, 0)))

    def crop(image, sy, sx):
        return jax.lax.dynamic_slice(image, (dy - sy, dx - sx, 0), (height, width, image.shape[2]))

    return jax.vmap(crop)(padded, shift_y, shift_x)


def _cutout(pair: jax.Array, key: jax.Array) -> jax.Array:
    n, height, width, _ = pair.shape
    size_y, size_x = round(height * CUTOUT_RATIO), round(width * CUTOUT_RATIO)
    ky, kx = jax.random.split(key)
    top = jax.random.randint(ky, (n, 1, 1, 1), 0, height - size_y + 1)
    left = jax.random.randint(kx, (n, 1, 1, 1), 0, width - size_x + 1)
    rows = jnp.arange(height)[None, :, None, None]
    cols = jnp.arange(width)[None, None, :, None]
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return jnp.where(inside, jnp.zeros((), pair.dtype), pair)


def augment_pair(condition: jax.Array, image: jax.Array, key: jax.Array,
                 policy: tuple[str, ...]) -> jax.Array:
    """(condition | image) concatenated on channels, transformed by `policy` (names from
    AUGMENTATIONS, checked with the config; applied as colour, translation, cutout) with the
    randomness of `key`: the same `key` gives the same transform, which is how real and fake
    pairs get identical ones."""
    keys = dict(zip(AUGMENTATIONS, jax.random.split(key, len(AUGMENTATIONS)), strict=True))
    if "color" in policy:
        image = _colour(image, keys["color"])
    pair = jnp.concatenate([condition, image], axis=-1)
    if "translation" in policy:
        pair = _translation(pair, keys["translation"])
    if "cutout" in policy:
        pair = _cutout(pair, keys["cutout"])
    return pair
