"""Colour from a lightness and two chroma channels, differentiably, on [-1, 1] images.

`model.chroma`: a colorization generator predicts only the chroma of its gray input, so its
output keeps the input's lightness exactly and a model that is unsure of a colour falls back
to gray instead of painting a cast. "ycbcr" pairs with a luma input (ITU-R 601, the
`gray` colour space of the colorization task), "lab" with CIE L* (its `lab` colour space).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Chroma from the network's tanh: Cb and Cr span [-1, 1] on the [-1, 1] scale of the images;
# CIE a* and b* of sRGB colours stay within about +-110.
AB_RANGE = 110.0
# CIE XYZ -> linear sRGB (IEC 61966-2-1), and the D65 white point, as OpenCV converts.
_XYZ_TO_RGB = np.array([[3.240479, -1.53715, -0.498535],
                         [-0.969256, 1.875991, 0.041556],
                         [0.055648, -0.204043, 1.057311]])
_WHITE = np.array([0.950456, 1.0, 1.088754])


def ycbcr_to_rgb(luma: jax.Array, chroma: jax.Array) -> jax.Array:
    """ITU-R 601 luma Y (N, H, W, 1) and (Cb, Cr) (N, H, W, 2), all on the [-1, 1] scale,
    to RGB in [-1, 1] (out-of-gamut values clipped). Cb = Cr = 0 is the gray of Y itself."""
    cb, cr = chroma[..., :1], chroma[..., 1:]
    rgb = jnp.concatenate([luma + 1.402 * cr, luma - 0.344136 * cb - 0.714136 * cr,
                           luma + 1.772 * cb], axis=-1)
    return jnp.clip(rgb, -1.0, 1.0)


def lab_to_rgb(lightness: jax.Array, ab: jax.Array) -> jax.Array:
    """CIE L* (N, H, W, 1) with [-1, 1] for 0..100 (OpenCV's 8-bit L scaled) and a*, b*
    (N, H, W, 2) with [-1, 1] for +-AB_RANGE, to sRGB in [-1, 1] (D65; out-of-gamut clipped)."""
    el = (lightness + 1.0) * 50.0
    fy = (el + 16.0) / 116.0
    f = jnp.concatenate([fy + ab[..., :1] * (AB_RANGE / 500.0), fy,
                         fy - ab[..., 1:] * (AB_RANGE / 200.0)], axis=-1)
    delta = 6.0 / 29.0
    xyz = _WHITE * jnp.where(f > delta, f**3, 3.0 * delta**2 * (f - 4.0 / 29.0))
    linear = jnp.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    # The power's gradient is infinite at 0: evaluate it only where its branch is taken.
    safe = jnp.maximum(linear, 0.0031308)
    srgb = jnp.where(linear > 0.0031308, 1.055 * safe ** (1.0 / 2.4) - 0.055, 12.92 * linear)
    return srgb * 2.0 - 1.0


def chroma_output(space: str, lightness: jax.Array, chroma: jax.Array) -> jax.Array:
    """`model.chroma`: the RGB image of the input's lightness and the network's chroma."""
    lightness = lightness.astype(jnp.float32)
    return ycbcr_to_rgb(lightness, chroma) if space == "ycbcr" else lab_to_rgb(lightness, chroma)
