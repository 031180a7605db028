"""Stride-2 convolutions and their transposes with every pass a fast CPU convolution.

On CPU, XLA lowers the input gradient of a stride-2 convolution (and so the forward pass of a
transposed convolution) to an input-dilated convolution that runs at a quarter of the speed of
an ordinary one, and the kernel gradient of a sub-pixel transposed convolution to four slow
window-sized convolutions. Written over space-to-depth, a 4x4/stride-2 convolution is a 2x2
stride-1 convolution over 4x the channels, whose transpose is an ordinary padded convolution.

`conv_stride2(x, k)` is the stride-2 convolution S_k and `conv_transpose_stride2(x, k)` its
transpose S_k^T (PyTorch `ConvTranspose2d` semantics). Each pass uses the fastest form: S_k
forward as XLA's strided convolution, S_k^T through space-to-depth, the kernel gradient as
XLA's or as one of three matmuls. The two are adjoint, so each one's gradients are the other's
passes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")


def supported(kernel_size: int, padding: int, *spatial: int) -> bool:
    """Whether the transposed form applies: an even kernel with output = 2 x input (and even
    `spatial` sizes). The convolution itself needs only an even kernel and even padded sizes,
    which `cpu.conv2d` arranges."""
    return (kernel_size % 2 == 0 and kernel_size == 2 * padding + 2
            and all(size % 2 == 0 for size in spatial))


def _strided(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (2, 2), ((padding, padding),) * 2,
                                    dimension_numbers=_DIMS)


def _padded_space_to_depth(x: jax.Array, padding: int) -> jax.Array:
    """(n, h, w, c) -> (n, h/2 + p, w/2 + p, 4c), channels ordered (row phase, col phase, c)."""
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // 2, w // 2, 4 * c)


def _space_to_depth(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """S_k as a 2x2 stride-1 convolution of the padded, space-to-depth input."""
    x = _padded_space_to_depth(x, padding)
    k, _, cin, cout = kernel.shape
    kernel = kernel.reshape(k // 2, 2, k // 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    kernel = kernel.reshape(k // 2, k // 2, 4 * cin, cout)
    return lax.conv_general_dilated(x, kernel, (1, 1), ((0, 0), (0, 0)),
                                    dimension_numbers=_DIMS)


def _transpose_space_to_depth(y: jax.Array, kernel: jax.Array, padding: int,
                              input_shape: tuple[int, ...]) -> jax.Array:
    """S_k^T(y): the transpose of `_space_to_depth`, an ordinary padded 2x2 convolution."""
    # Zeros like y, not a bare shape: inside shard_map they vary over y's devices, as y does.
    template = jnp.zeros_like(y, shape=input_shape)
    (x,) = jax.linear_transpose(lambda x: _space_to_depth(x, kernel, padding), template)(y)
    return x


def _patch_kernel_grad(x: jax.Array, dy: jax.Array, kernel_shape: tuple[int, ...],
                       padding: int) -> jax.Array:
    """The kernel gradient of S_k as one matmul: (taps x positions) patches times dy.

    The patches are built channel-major from the space-to-depth input (so the matmul needs no
    transposed operand): tap (a, b) of the 2x2 stride-1 form is a shifted window of it.
    """
    k, _, cin, cout = kernel_shape
    out_h, out_w = dy.shape[1:3]
    x = _padded_space_to_depth(x, padding).transpose(3, 0, 1, 2)
    taps = k // 2
    patches = jnp.concatenate([x[:, :, a:a + out_h, b:b + out_w]
                               for a in range(taps) for b in range(taps)])
    grad = jnp.dot(patches.reshape(patches.shape[0], -1), dy.reshape(-1, cout))
    grad = grad.reshape(taps, taps, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    return grad.reshape(kernel_shape)


def _shifted_kernel_grad(x: jax.Array, dy: jax.Array, kernel_shape: tuple[int, ...],
                         padding: int) -> jax.Array:
    """The kernel gradient of S_k as one matmul: shifted copies of dy times the input.

    Tap (a, b) of the 2x2 stride-1 form sums x_s2d[i, j] * dy[i - a, j - b], so stacking the
    shifted dy (channel-major, the cheap layout to shift) gives every tap from one matmul with
    the row-major space-to-depth input. The barriers keep XLA from folding the layout changes
    into the matmul, which then runs at half speed.
    """
    k, _, cin, cout = kernel_shape
    taps = k // 2
    x = _padded_space_to_depth(x, padding)
    height, width = x.shape[1:3]
    dy = jnp.pad(dy.transpose(3, 0, 1, 2),
                 ((0, 0), (0, 0), (taps - 1, taps - 1), (taps - 1, taps - 1)))
    shifted = jnp.concatenate([dy[:, :, taps - 1 - a:taps - 1 - a + height,
                                  taps - 1 - b:taps - 1 - b + width]
                               for a in range(taps) for b in range(taps)])
    grad = jnp.dot(lax.optimization_barrier(shifted.reshape(taps * taps * cout, -1)),
                   lax.optimization_barrier(x.reshape(-1, 4 * cin)))
    grad = grad.reshape(taps, taps, cout, 2, 2, cin).transpose(0, 3, 1, 4, 5, 2)
    return grad.reshape(kernel_shape)


def kernel_grad_form(kernel_shape: tuple[int, ...], out_h: int, out_w: int) -> str:
    """Which kernel gradient runs fastest on CPU (measured for 4x4 kernels, batch 1 and 4).

    XLA's own is a convolution whose window is the whole output map: the fastest below 32x32
    outputs, and down to a third of matmul speed above. There, the shifted-dy matmul wins
    unless the input is so narrow (under 16 channels) that its matmul is too.
    """
    if out_h * out_w < 32 * 32:
        return "xla"
    return "patches" if kernel_shape[2] < 16 else "shifted"


def _strided_kernel_grad(x: jax.Array, dy: jax.Array, kernel_shape: tuple[int, ...],
                         padding: int) -> jax.Array:
    form = kernel_grad_form(kernel_shape, *dy.shape[1:3])
    if form == "patches":
        return _patch_kernel_grad(x, dy, kernel_shape, padding)
    if form == "shifted":
        return _shifted_kernel_grad(x, dy, kernel_shape, padding)
    template = jnp.zeros_like(dy, shape=kernel_shape)  # As in _transpose_space_to_depth.
    (grad,) = jax.linear_transpose(lambda k: _strided(x, k, padding), template)(dy)
    return grad


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_stride2(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """Cross-correlation with stride 2 (NHWC x HWIO), as `lax.conv_general_dilated`."""
    return _strided(x, kernel, padding)


def _conv_fwd(x, kernel, padding):
    return _strided(x, kernel, padding), (x, kernel)


def _conv_bwd(padding, residuals, dy):
    x, kernel = residuals
    return (_transpose_space_to_depth(dy, kernel, padding, x.shape),
            _strided_kernel_grad(x, dy, kernel.shape, padding))


conv_stride2.defvjp(_conv_fwd, _conv_bwd)


def _swap_io(kernel: jax.Array) -> jax.Array:
    return jnp.swapaxes(kernel, 2, 3)


def _transpose(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    n, h, w, _ = x.shape
    return _transpose_space_to_depth(x, _swap_io(kernel), padding,
                                     (n, 2 * h, 2 * w, kernel.shape[3]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose_stride2(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """PyTorch `ConvTranspose2d` with stride 2: out[2i - p + k] += x[i] @ kernel[k].

    `kernel` is (k, k, in, out); this is S^T for the stride-2 convolution with the kernel's
    channel axes swapped."""
    return _transpose(x, kernel, padding)


def _transpose_fwd(x, kernel, padding):
    return _transpose(x, kernel, padding), (x, kernel)


def _transpose_kernel_grad(x: jax.Array, dy: jax.Array, kernel_shape: tuple[int, ...],
                           padding: int) -> jax.Array:
    """The kernel gradient of S_k^T(x) over small maps, as one matmul of x with dy's patches.

    grad[a, b] = sum_i x[i] (x) dy[2i - p + (a, b)]. The matmul's (in, taps, out) result
    reaches the kernel's (taps, in, out) by moving whole rows of `out`. XLA's convolution
    (the "xla" form of `kernel_grad_form`) gives (out, taps, in) instead, a full transpose
    that XLA fuses into Adam's pass as a strided read: unet_256's up_4 at batch 4 took 39 ms
    for gradient and moment update, this 18 ms.
    """
    k, _, cin, cout = kernel_shape
    _, h, w, _ = x.shape
    dy = jnp.pad(dy, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    patches = jnp.concatenate([dy[:, a:a + 2 * h - 1:2, b:b + 2 * w - 1:2]
                               for a in range(k) for b in range(k)], axis=-1)
    grad = jnp.dot(x.reshape(-1, cin).T, patches.reshape(-1, k * k * cout))
    return grad.reshape(cin, k, k, cout).transpose(1, 2, 0, 3)


def _transpose_bwd(padding, residuals, dy):
    x, kernel = residuals
    swapped = _swap_io(kernel)
    if kernel_grad_form(swapped.shape, *x.shape[1:3]) == "xla":
        kernel_grad = _transpose_kernel_grad(x, dy, kernel.shape, padding)
    else:
        kernel_grad = _swap_io(_strided_kernel_grad(dy, x, swapped.shape, padding))
    return _strided(dy, swapped, padding), kernel_grad


conv_transpose_stride2.defvjp(_transpose_fwd, _transpose_bwd)
