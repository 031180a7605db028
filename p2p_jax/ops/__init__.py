"""Convolutions as the models use them, with their implementation chosen once per run.

`conv2d` and `conv_transpose2d` compute one function whatever the implementation: PyTorch's
Conv2d / ConvTranspose2d with explicit zero padding, NHWC x HWIO. `impl="xla"` is XLA's own
convolution (portable; what TPU, GPU and every export use); `impl="cpu"` rewrites the layers
that XLA:CPU runs far below its matmul peak (see `cpu`). The builder resolves the config's
`model.conv_impl` once from the mesh's platform with `resolve_impl`; layers never ask which
backend they run on.

A one-hot label map (`OneHotMap`) convolves as table lookups in the `cpu` form (`one_hot`)
and as XLA's convolution of its dense tensor in the `xla` form.
"""

from __future__ import annotations

import jax

from p2p_jax.ops import cpu, one_hot, xla
from p2p_jax.ops.one_hot import OneHotMap

Padding = tuple[tuple[int, int], tuple[int, int]]


def resolve_impl(setting: str, platform: str) -> str:
    """`model.conv_impl` for a mesh on `platform` ("cpu", "gpu", "tpu"): `auto` is "cpu" on
    CPU and "xla" elsewhere."""
    if setting == "auto":
        return "cpu" if platform == "cpu" else "xla"
    if setting not in ("xla", "cpu"):
        raise ValueError(f"model.conv_impl={setting!r} is not one of auto, xla, cpu")
    return setting


def _pairs(padding: int | Padding) -> Padding:
    return ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding


def conv2d(x: jax.Array | OneHotMap, kernel: jax.Array, stride: int, padding: int | Padding,
           impl: str = "xla") -> jax.Array:
    """Cross-correlation of NHWC `x` with an HWIO `kernel` (what `lax.conv_general_dilated`
    computes), zero padding of `padding` pixels per side (or ((top, bottom), (left, right)))."""
    if isinstance(x, OneHotMap):
        if impl == "cpu":
            return one_hot.conv2d(x, kernel, stride, _pairs(padding))
        x = x.dense(kernel.dtype)
    module = cpu if impl == "cpu" else xla
    return module.conv2d(x, kernel, stride, _pairs(padding))


def conv_transpose2d(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                     output_padding: int = 0, impl: str = "xla") -> jax.Array:
    """PyTorch `ConvTranspose2d`: out[s*i - p + k] += x[i] @ kernel[k], kernel (k, k, in, out)."""
    module = cpu if impl == "cpu" else xla
    return module.conv_transpose2d(x, kernel, stride, padding, output_padding)
