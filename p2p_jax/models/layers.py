"""Building blocks shared by the generators and discriminators.

Everything is NHWC. Initialisation follows the reference: conv kernels N(0, 0.02), biases 0,
batch-norm scales N(1, 0.02) and shifts 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from p2p_jax.models import stride2

Dtype = Any

conv_init = nn.initializers.normal(stddev=0.02)


def norm_scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32):
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


NORMS = ("batch", "instance", "none")


Layer = Callable[[jax.Array], jax.Array]


def make_norm(norm: str, train: bool, dtype: Dtype) -> Callable[..., Layer]:
    """Returns a factory of norm layers; call it inside a compact method.

    `batch` normalises over the global batch (under `jit` with a sharded batch the mean is
    computed across devices). `instance` is the reference's affine-free InstanceNorm2d.
    """
    if norm == "batch":
        return lambda name=None: nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=dtype,
            scale_init=norm_scale_init,
            name=name,
        )
    if norm == "instance":
        return lambda name=None: nn.InstanceNorm(
            epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype, name=name)
    if norm == "none":
        return lambda name=None: (lambda x: x)
    raise ValueError(f"model.norm={norm!r} is not one of {NORMS}")


def uses_bias(norm: str) -> bool:
    """The reference drops conv biases that a batch norm would cancel."""
    return norm != "batch"


# On CPU, XLA's convolutions over small feature maps (the inner U-Net levels: 512-1024
# channels at 1x1..16x16) run far below peak, above all their gradients; as explicit
# patch matmuls they are 2-10x faster. Same function, chosen per layer by the number of
# (batch x spatial) positions.
IM2COL_MAX_PIXELS = {"cpu": 256}


def use_im2col(pixels: int, backend: str | None = None) -> bool:
    return pixels <= IM2COL_MAX_PIXELS.get(backend or jax.default_backend(), 0)


# Backends where stride-2 convolutions take the space-to-depth passes of `stride2`.
SPACE_TO_DEPTH_BACKENDS = ("cpu",)


def _static_batch(n) -> int:
    """The batch for size rules; 1 where it is symbolic (batch-polymorphic exports)."""
    return n if isinstance(n, int) else 1


def correlate(x: jax.Array, kernel: jax.Array, stride: int,
              padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    """Cross-correlation (what `lax.conv_general_dilated` computes), NHWC x HWIO.

    On CPU, small outputs are computed as one matmul over gathered patches (static strided
    slices, so the gradients stay slices and pads) and larger stride-2 ones by `stride2`."""
    kh, kw = kernel.shape[:2]
    (top, bottom), (left, right) = padding
    out_h = (x.shape[1] + top + bottom - kh) // stride + 1
    out_w = (x.shape[2] + left + right - kw) // stride + 1
    if not use_im2col(_static_batch(x.shape[0]) * min(out_h * out_w, x.shape[1] * x.shape[2])):
        if (stride == 2 and kh == kw and top == bottom == left == right
                and jax.default_backend() in SPACE_TO_DEPTH_BACKENDS
                and stride2.supported(kh, top, x.shape[1], x.shape[2])):
            return stride2.conv_stride2(x, kernel, top)
        return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, bottom, 0), (left, right, 0),
                                             (0, 0, 0)))
    patches = jnp.concatenate(
        [x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
         for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.einsum("nhwk,ko->nhwo", patches, kernel.reshape(-1, kernel.shape[-1]))


class Conv(nn.Module):
    """A conv with explicit symmetric zero padding, as PyTorch's `padding=`.

    Parameters are those of `nn.Conv` ('kernel' (k, k, in, out), 'bias').
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", conv_init, (k, k, x.shape[-1], self.features))
        pad = (self.padding, self.padding)
        y = correlate(x.astype(self.dtype), kernel.astype(self.dtype), self.stride, (pad, pad))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y


def conv(features: int, kernel: int, stride: int, padding: int, use_bias: bool, dtype: Dtype,
         name: str | None = None) -> Conv:
    return Conv(features, kernel, stride, padding, use_bias, dtype, name=name)


UPSAMPLE_MODES = ("auto", "conv_transpose", "space_to_depth", "subpixel", "matmul",
                  "resize_nearest", "resize_bilinear")


def resolve_upsample(mode: str, backend: str | None = None, kernel_size: int = 4,
                     padding: int = 1, pixels: int | None = None) -> str:
    """`auto`: lax.conv_transpose on TPU/GPU. On CPU, where XLA's transposed convolutions and
    their gradients run far below its ordinary ones: `matmul` where the output is small
    (`pixels`: batch x input positions; 4x that are written), else `space_to_depth` (see
    `stride2`) where the kernel allows it, else the stride-1 sub-pixel form."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"model.upsample={mode!r} is not one of {UPSAMPLE_MODES}")
    if mode != "auto":
        return mode
    backend = backend or jax.default_backend()
    if backend not in SPACE_TO_DEPTH_BACKENDS:
        return "conv_transpose"
    if pixels is not None and use_im2col(4 * pixels, backend):
        return "matmul"
    return "space_to_depth" if stride2.supported(kernel_size, padding) else "subpixel"


def conv_transpose_reference(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                             output_padding: int) -> jax.Array:
    """PyTorch `ConvTranspose2d` semantics via `lax.conv_transpose`.

    `kernel` is (kh, kw, in, out) and out[s*i - p + k] += x[i] * kernel[k].
    """
    k = kernel.shape[0]
    pad = (k - 1 - padding, k - 1 - padding + output_padding)
    return lax.conv_transpose(
        x,
        jnp.flip(kernel, (0, 1)),
        strides=(stride, stride),
        padding=(pad, pad),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


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
    """The same function as `conv_transpose_reference`, built from stride-1 convolutions.

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
            cols.append(correlate(x, sub, 1, (pad_h, pad_w)))
        rows.append(jnp.stack(cols, axis=3))  # n, h, w, pw, c
    y = jnp.stack(rows, axis=2)  # n, h, ph, w, pw, c
    return y.reshape(n, stride * h, stride * w, y.shape[-1])


def conv_transpose_matmul(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                          output_padding: int) -> jax.Array:
    """The same function as `conv_transpose_reference`, as one batched matmul per kernel tap.

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


class Upsample2x(nn.Module):
    """The reference's stride-2 transposed conv (or a resize-conv), doubling H and W.

    Parameters are identical for `conv_transpose` and `subpixel` (a (k, k, in, out) kernel with
    PyTorch ConvTranspose2d semantics), so checkpoints move freely between backends.
    """

    features: int
    kernel_size: int = 4
    padding: int = 1
    output_padding: int = 0
    use_bias: bool = True
    mode: str = "auto"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        mode = resolve_upsample(self.mode, kernel_size=self.kernel_size, padding=self.padding,
                                pixels=_static_batch(n) * h * w)
        if mode.startswith("resize_"):
            method = "nearest" if mode == "resize_nearest" else "bilinear"
            x = jax.image.resize(x, (n, 2 * h, 2 * w, c), method=method)
            return Conv(self.features, 3, 1, 1, self.use_bias, self.dtype)(x)
        kernel = self.param("kernel", conv_init,
                            (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        if mode == "space_to_depth":
            if self.output_padding or not stride2.supported(self.kernel_size, self.padding):
                raise ValueError(f"model.upsample=space_to_depth needs a {2 * self.padding + 2}"
                                 f"-wide kernel and no output padding; use subpixel")
            y = stride2.conv_transpose_stride2(x, kernel, self.padding)
        else:
            fn = {"conv_transpose": conv_transpose_reference, "subpixel": conv_transpose_subpixel,
                  "matmul": conv_transpose_matmul}[mode]
            y = fn(x, kernel, 2, self.padding, self.output_padding)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y
