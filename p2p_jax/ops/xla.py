"""The portable forms: XLA's own convolutions, as TPU, GPU and exported programs run them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def conv2d(x: jax.Array, kernel: jax.Array, stride: int,
           padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                    dimension_numbers=DIMENSIONS)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                     output_padding: int) -> jax.Array:
    """PyTorch `ConvTranspose2d` semantics via `lax.conv_transpose`; `kernel` (k, k, in, out)."""
    k = kernel.shape[0]
    pad = (k - 1 - padding, k - 1 - padding + output_padding)
    return lax.conv_transpose(x, jnp.flip(kernel, (0, 1)), strides=(stride, stride),
                              padding=(pad, pad), dimension_numbers=DIMENSIONS)
