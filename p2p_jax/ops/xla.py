"""The portable forms: XLA's own convolutions, as TPU, GPU and exported programs run them.

One change to XLA's arithmetic, in the backward pass only: the weight gradient of a wide,
shallow convolution is summed over bands of output rows. XLA's TPU convolution unfolds a
shallow input's kernel columns into its channels for the weight gradient; for pix2pixHD's
7x7 head at 2048x1024 (36 label channels, padded to 128 lanes) that one temporary was
3.81 GB, the largest buffer of the step (benchmarks/README.md). Band by band, in a loop, only
one band's unfolding is alive.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

DIMENSIONS = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]

# The unfolded input one weight-gradient band may take: rows x width x kernel columns x
# channels (at least the 128 lanes a TPU tile pads them to) x bytes.
BAND_BYTES = 512 * 2**20
LANES = 128


def lax_conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """XLA's convolution as it is (the CPU forms' fallback: XLA:CPU pads no lanes)."""
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                    dimension_numbers=DIMENSIONS)


def weight_gradient_bands(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], stride: int,
                          padding: Padding, itemsize: int, band_bytes: int = BAND_BYTES) -> int:
    """How many bands of output rows the weight gradient is summed over (1: XLA's own): the
    fewest that keep each band's unfolded input in `band_bytes`."""
    _, height, width, channels = x_shape
    kh, kw = kernel_shape[:2]
    (top, bottom), (left, right) = padding
    out_h = (height + top + bottom - kh) // stride + 1
    unfolded_row = (width + left + right) * kw * max(channels, LANES) * itemsize
    for bands in range(1, out_h + 1):
        rows = -(-out_h // bands)
        if ((rows - 1) * stride + kh) * unfolded_row <= band_bytes:
            return -(-out_h // rows)
    return out_h


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """XLA's convolution, its weight gradient banded where `weight_gradient_bands` says."""
    bands = weight_gradient_bands(x.shape, kernel.shape, stride, padding, x.dtype.itemsize)
    if bands == 1:
        return lax_conv2d(x, kernel, stride, padding)
    return conv2d_banded(x, kernel, stride, padding, bands)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_banded(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding,
                  bands: int) -> jax.Array:
    """`lax_conv2d`, whose weight gradient is summed over `bands` bands of output rows in a
    loop (float32 between bands; the last band is filled with zero rows); the input gradient
    is XLA's own."""
    return lax_conv2d(x, kernel, stride, padding)


def _banded_forward(x, kernel, stride, padding, bands):
    return lax_conv2d(x, kernel, stride, padding), (x, kernel)


def _banded_backward(stride, padding, bands, residuals, dy):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x_: lax_conv2d(x_, kernel, stride, padding), x)
    (dx,) = input_vjp(dy)
    rows = -(-dy.shape[1] // bands)
    band_height = (rows - 1) * stride + kernel.shape[0]
    # Zero rows of dy past the output add nothing; x gets the rows they would read.
    dy = jnp.pad(dy, ((0, 0), (0, bands * rows - dy.shape[1]), (0, 0), (0, 0)))
    (top, bottom), (left, right) = padding
    bottom = max(bottom, (bands - 1) * rows * stride + band_height - x.shape[1] - top)
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))

    def band_gradient(band):
        x_band = lax.dynamic_slice_in_dim(padded, band * rows * stride, band_height, 1)
        dy_band = lax.dynamic_slice_in_dim(dy, band * rows, rows, 1)
        _, kernel_vjp = jax.vjp(lambda k: lax_conv2d(x_band, k, stride, ((0, 0), (0, 0))),
                                kernel)
        return kernel_vjp(dy_band)[0].astype(jnp.float32)

    # Zeros of the gradient's type: inside `shard_map`, varying over the axes its operands
    # vary over (a carry must keep its type). Band 0 outside the loop would be sliced from
    # an unfolding of the whole input: XLA built the 3.81 GB buffer again for it.
    zeros = sum(jnp.zeros_like(a, jnp.float32, kernel.shape) for a in (x, dy, kernel))
    total, _ = lax.scan(lambda total, band: (total + band_gradient(band), None), zeros,
                        jnp.arange(bands))
    return dx, total.astype(kernel.dtype)


conv2d_banded.defvjp(_banded_forward, _banded_backward)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                     output_padding: int) -> jax.Array:
    """PyTorch `ConvTranspose2d` semantics via `lax.conv_transpose`; `kernel` (k, k, in, out)."""
    k = kernel.shape[0]
    pad = (k - 1 - padding, k - 1 - padding + output_padding)
    return lax.conv_transpose(x, jnp.flip(kernel, (0, 1)), strides=(stride, stride),
                              padding=(pad, pad), dimension_numbers=DIMENSIONS)
