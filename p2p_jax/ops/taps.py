"""Stride-1 convolutions with few output channels as one matmul over every kernel tap.

XLA:CPU runs a convolution with 3 output channels (an image generator's last 7x7 layer) at a
few GFLOP/s: there is no output width to vectorise over. Multiplying each input pixel by all
k*k taps at once, (pixels x in) @ (in x k*k*out), is one matmul of useful width; the output is
the sum of the k*k shifted slices of that product. The transpose is the same two steps the
other way round (the cotangent's shifted copies side by side, then two matmuls), written out
because autodiff would scatter every slice into a full-size zero array instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _all_taps(kernel: jax.Array) -> jax.Array:
    """(k, k, in, out) -> (in, k * k * out), columns ordered (row tap, column tap, out)."""
    kh, kw, cin, cout = kernel.shape
    return kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)


def _pixelwise(x: jax.Array, matrix: jax.Array) -> jax.Array:
    """Every pixel's channel vector times `matrix`, in float32 (bf16 inputs too: the output
    sums k * k of these products, which rounding each to bf16 first would spoil)."""
    flat = jnp.dot(x.reshape(-1, x.shape[-1]), matrix, preferred_element_type=jnp.float32)
    return flat.reshape(*x.shape[:-1], matrix.shape[-1])


@jax.custom_vjp
def conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """What `xla.conv2d(x, kernel, 1, ((0, 0), (0, 0)))` computes."""
    kh, kw, _, cout = kernel.shape
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    products = _pixelwise(x, _all_taps(kernel))
    y = None
    for i in range(kh):
        for j in range(kw):
            tap = (i * kw + j) * cout
            part = products[:, i:i + out_h, j:j + out_w, tap:tap + cout]
            y = part if y is None else y + part
    return y.astype(x.dtype)


def _forward(x, kernel):
    return conv_valid(x, kernel), (x, kernel)


def _backward(residuals, dy):
    x, kernel = residuals
    kh, kw, cin, cout = kernel.shape
    height, width = x.shape[1:3]
    dy = jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    # d products[h, w, (i, j, o)] = dy[h - i, w - j, o]
    d_products = jnp.concatenate([dy[:, kh - 1 - i:kh - 1 - i + height,
                                     kw - 1 - j:kw - 1 - j + width]
                                  for i in range(kh) for j in range(kw)], axis=-1)
    dx = _pixelwise(d_products, _all_taps(kernel).T).astype(x.dtype)
    # As a 2-D matmul of the flattened maps: XLA:CPU's einsum over (n, h, w) took twice as long.
    d_taps = jnp.dot(x.reshape(-1, cin).T, d_products.reshape(-1, d_products.shape[-1]),
                     preferred_element_type=jnp.float32).astype(kernel.dtype)
    return dx, d_taps.reshape(cin, kh, kw, cout).transpose(1, 2, 0, 3)


conv_valid.defvjp(_forward, _backward)
