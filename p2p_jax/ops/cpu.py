"""CPU forms of the convolutions: the same functions as `xla`, rewritten where XLA:CPU is slow.

Measured on the 2-core development CPU (benchmarks/README.md):
- Convolutions over small feature maps (the inner U-Net levels: 512-1024 channels at 1x1 to
  16x16), above all their gradients, run far below peak; as explicit patch matmuls they are
  2-10x faster.
- Stride-2 convolutions: their input gradient lowers to a slow input-dilated convolution; the
  space-to-depth passes of `stride2` are ordinary convolutions (for every even kernel, any
  padding: pix2pixHD's discriminator's 4x4/2 layers with padding 2, fwd + VJP 83 -> 61 ms on
  its 512x256 input).
- Transposed convolutions (forward and backward) run at 6-14 GFLOP/s against ~200 for
  ordinary ones: as per-tap matmuls on small maps, over space-to-depth where the kernel allows,
  else as four stride-1 sub-pixel convolutions.
- 3x3 stride-1 convolutions between wide layers (pix2pixHD's 1024-channel residual blocks,
  VGG's 512-channel stages) by Winograd's F(2x2, 3x3), 2.25x fewer multiplies: forward +
  VJP of a 16x32 1024 -> 1024 residual conv 258 -> 105 ms (benchmarks/conv_forms.py); with
  fewer channels its transforms cost what they save (256 channels at 64x128: fwd + input
  gradient 227 -> 280 ms), so it is used from 512 channels in and out.
- Stride-1 convolutions with few output channels (the generators' last 7x7 layer, 64 -> 3)
  run at ~5 GFLOP/s: as one matmul over all the kernel's taps (`taps`), the 512x256 one's
  forward 148 -> 30 ms, forward + VJP 286 -> 126 ms.
- Convolutions padded so that their output is larger than their input (pix2pixHD's 4x4
  stride-1 discriminator layers, padding 2): XLA:CPU's weight gradient of such a convolution
  took 8.1 s against 49 ms for its forward at 33x65x256 -> 512; padded explicitly first, the
  convolution is an ordinary valid one and its weight gradient takes 49 ms.
Each form is chosen per layer from static shapes, so a layer's choice never changes between
calls; parameters are the same as `xla`'s, so checkpoints move freely between the two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from p2p_jax.ops import stride2, taps, winograd, xla

# Outputs of at most this many (batch x spatial) positions run as patch matmuls.
IM2COL_MAX_PIXELS = 256
# 3x3 stride-1 convolutions with at least this many channels in and out run as Winograd's.
WINOGRAD_MIN_CHANNELS = 512
# Stride-1 convolutions with at most this many output channels run as one matmul over all
# taps, unless that product (k * k * out float32 values per input pixel) would exceed this
# many bytes.
TAP_MATMUL_MAX_OUT_CHANNELS = 8
TAP_MATMUL_MAX_BYTES = 512 * 2**20


def use_im2col(pixels: int) -> bool:
    return pixels <= IM2COL_MAX_PIXELS


def use_winograd(kernel_shape: tuple[int, ...], stride: int) -> bool:
    kh, kw, cin, cout = kernel_shape
    return stride == 1 and kh == kw == 3 and min(cin, cout) >= WINOGRAD_MIN_CHANNELS


def use_tap_matmul(kernel_shape: tuple[int, ...], stride: int, input_pixels: int) -> bool:
    """`input_pixels`: batch x padded height x width, the rows of the taps' product."""
    kh, kw, _, cout = kernel_shape
    return (stride == 1 and kh * kw > 1 and cout <= TAP_MATMUL_MAX_OUT_CHANNELS
            and input_pixels * kh * kw * cout * 4 <= TAP_MATMUL_MAX_BYTES)


def _static_batch(n) -> int:
    """The batch for size rules; 1 where it is symbolic (batch-polymorphic programs)."""
    return n if isinstance(n, int) else 1


def _zero_pad(x: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    (top, bottom), (left, right) = padding
    return lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, bottom, 0), (left, right, 0),
                                               (0, 0, 0)))


def conv2d(x: jax.Array, kernel: jax.Array, stride: int,
           padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    """Small outputs as one matmul over gathered patches (static strided slices, so the
    gradients stay slices and pads), larger even-kernel stride-2 ones through `stride2`, wide
    3x3 stride-1 ones by Winograd's form, those with few outputs over all taps at once
    (`taps`), the rest as XLA's."""
    kh, kw = kernel.shape[:2]
    (top, bottom), (left, right) = padding
    out_h = (x.shape[1] + top + bottom - kh) // stride + 1
    out_w = (x.shape[2] + left + right - kw) // stride + 1
    batch = _static_batch(x.shape[0])
    if not use_im2col(batch * min(out_h * out_w, x.shape[1] * x.shape[2])):
        if stride == 2 and kh == kw and kh % 2 == 0 and top == bottom == left == right:
            return _conv_stride2(x, kernel, top, out_h, out_w)
        if use_winograd(kernel.shape, stride):
            return winograd.conv3x3(x, kernel, padding)
        padded_pixels = batch * (x.shape[1] + top + bottom) * (x.shape[2] + left + right)
        if use_tap_matmul(kernel.shape, stride, padded_pixels):
            return taps.conv_valid(_zero_pad(x, padding), kernel)
        if top + bottom > kh - 1 or left + right > kw - 1:
            return xla.lax_conv2d(_zero_pad(x, padding), kernel, stride, ((0, 0), (0, 0)))
        return xla.lax_conv2d(x, kernel, stride, padding)
    x = _zero_pad(x, padding)
    patches = jnp.concatenate(
        [x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
         for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.einsum("nhwk,ko->nhwo", patches, kernel.reshape(-1, kernel.shape[-1]))


def _conv_stride2(x: jax.Array, kernel: jax.Array, padding: int, out_h: int, out_w: int
                  ) -> jax.Array:
    """An even-kernel stride-2 convolution through `stride2`, whose space-to-depth needs even
    padded sizes: an odd one gets a zero row (column) more at the end, read only by one extra
    output row (column), which is dropped."""
    odd_h, odd_w = (x.shape[1] + 2 * padding) % 2, (x.shape[2] + 2 * padding) % 2
    if odd_h or odd_w:
        x = _zero_pad(x, ((0, odd_h), (0, odd_w)))
    return stride2.conv_stride2(x, kernel, padding)[:, :out_h, :out_w]


def transpose_form(kernel_size: int, padding: int, output_padding: int, pixels: int) -> str:
    """Which form a stride-2 transposed conv takes: `matmul` where the output is small
    (`pixels`: batch x input positions; 4x that are written), else `space_to_depth` where the
    kernel allows it, else `subpixel`."""
    if use_im2col(4 * pixels):
        return "matmul"
    if not output_padding and stride2.supported(kernel_size, padding):
        return "space_to_depth"
    return "subpixel"


def _phase_kernel(kernel: jax.Array, stride: int, padding: int, phase: int, axis: int
                  ) -> tuple[jax.Array, int]:
    """The kernel taps along `axis` that reach outputs `stride*m + phase`, and the input offset.

    out[s*m + r] = sum_j x[m + q - j] * w[s*j + c] with c = (r+p) mod s, q = (r+p) // s, so the
    phase is a correlation of x[m + q - J + 1 .. m + q] with the taps w[c::s] reversed. Static
    strided slices (not gathers) keep the kernel gradient a cheap pad instead of a scatter.
    """
    c, q = (phase + padding) % stride, (phase + padding) // stride
    index = [slice(None)] * kernel.ndim
    index[axis] = slice(c, None, stride)
    taps = jnp.flip(kernel[tuple(index)], axis)
    return taps, q - taps.shape[axis] + 1


def conv_transpose_subpixel(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                            output_padding: int) -> jax.Array:
    """`xla.conv_transpose2d` built from stride-1 convolutions.

    Each of the stride**2 output phases is an ordinary small convolution of the input with a
    subset of the kernel taps; the phases are interleaved by depth-to-space. Requires the
    output to be exactly `stride` times the input (true for the 4x4/s2/p1 and 3x3/s2/p1/op1
    layers of pix2pix).
    """
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    out_h = (h - 1) * stride - 2 * padding + k + output_padding
    out_w = (w - 1) * stride - 2 * padding + k + output_padding
    if out_h != stride * h or out_w != stride * w:
        raise ValueError(f"sub-pixel transposed conv needs output = {stride}x input; got {out_h}")
    rows = []
    for ph in range(stride):
        rows_kernel, off_h = _phase_kernel(kernel, stride, padding, ph, axis=0)
        cols = []
        for pw in range(stride):
            sub, off_w = _phase_kernel(rows_kernel, stride, padding, pw, axis=1)
            pad_h = (-off_h, off_h + sub.shape[0] - 1)
            pad_w = (-off_w, off_w + sub.shape[1] - 1)
            cols.append(conv2d(x, sub, 1, (pad_h, pad_w)))
        rows.append(jnp.stack(cols, axis=3))  # n, h, w, pw, c
    y = jnp.stack(rows, axis=2)  # n, h, ph, w, pw, c
    return y.reshape(n, stride * h, stride * w, y.shape[-1])


def conv_transpose_matmul(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                          output_padding: int) -> jax.Array:
    """`xla.conv_transpose2d` as one batched matmul per kernel tap.

    Every input pixel times each tap's (in, out) matrix, placed at its output offset (a strided
    pad) and summed. The kernel is used in its stored layout, so nothing kernel-sized is copied
    in either pass: the form for small maps, where the large inner kernels dominate the cost.
    """
    n, h, w, cin = x.shape
    k, cout = kernel.shape[0], kernel.shape[3]
    out_h = (h - 1) * stride - 2 * padding + k + output_padding
    out_w = (w - 1) * stride - 2 * padding + k + output_padding
    taps = kernel.reshape(k * k, cin, cout)
    pixels = jnp.broadcast_to(x.reshape(1, n * h * w, cin), (k * k, n * h * w, cin))
    products = jnp.einsum("tmc,tcd->tmd", pixels, taps).reshape(k, k, n, h, w, cout)
    zero = jnp.zeros((), x.dtype)
    y = None
    for a in range(k):
        for b in range(k):
            low_h, low_w = a - padding, b - padding
            placed = lax.pad(products[a, b], zero, (
                (0, 0, 0),
                (low_h, out_h - low_h - (h - 1) * stride - 1, stride - 1),
                (low_w, out_w - low_w - (w - 1) * stride - 1, stride - 1),
                (0, 0, 0)))
            y = placed if y is None else y + placed
    return y


def conv_transpose2d(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                     output_padding: int) -> jax.Array:
    """The form `transpose_form` picks for stride 2; other strides are XLA's."""
    if stride != 2:
        return xla.conv_transpose2d(x, kernel, stride, padding, output_padding)
    n, h, w, _ = x.shape
    form = transpose_form(kernel.shape[0], padding, output_padding, _static_batch(n) * h * w)
    if form == "space_to_depth":
        return stride2.conv_transpose_stride2(x, kernel, padding)
    if form == "matmul":
        return conv_transpose_matmul(x, kernel, stride, padding, output_padding)
    return conv_transpose_subpixel(x, kernel, stride, padding, output_padding)
