"""Convolutions as the models use them, with their implementation chosen once per run.

`conv2d` and `conv_transpose2d` compute one function whatever the implementation: PyTorch's
Conv2d / ConvTranspose2d with explicit zero padding, NHWC x HWIO. `impl="xla"` is XLA's own
convolution (portable; what TPU, GPU and every export use; a wide, shallow layer's weight
gradient is summed band by band, see `xla`); `impl="cpu"` rewrites the layers
that XLA:CPU runs far below its matmul peak (see `cpu`). The builder resolves the config's
`model.conv_impl` once from the mesh's platform with `resolve_impl`; layers never ask which
backend they run on.

Instance normalisation's backward pass has a form per backend too (`norm`). A one-hot label
map (`OneHotMap`) convolves as table lookups in the `cpu` form (`one_hot`)
and as XLA's convolution of its dense tensor in the `xla` form; `uses_label_lookups` decides,
once per run, which of the two a label map takes. The models use this module's names only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from p2p_jax.ops import cpu, norm, one_hot, xla
from p2p_jax.ops.one_hot import OneHotMap, as_array

__all__ = ["OneHotMap", "as_array", "conv2d", "conv_transpose2d", "instance_norm",
           "reflect_pad", "resolve_impl", "uses_label_lookups"]

Padding = tuple[tuple[int, int], tuple[int, int]]


def resolve_impl(setting: str, mesh: Mesh) -> str:
    """`model.conv_impl` for `mesh`: `auto` is "cpu" on a CPU mesh within one process and
    "xla" elsewhere. Over several CPU processes (multi-host code tried on one machine) the CPU
    forms' gradients through dropout differed from one process's by 1% at the first step
    (2x2 against 1x4 devices, `tests/test_multiprocess.py`), where XLA's agreed to 1e-6."""
    if setting == "auto":
        platform = mesh.devices.flat[0].platform
        processes = {d.process_index for d in mesh.devices.flat}
        return "cpu" if platform == "cpu" and len(processes) == 1 else "xla"
    if setting not in ("xla", "cpu"):
        raise ValueError(f"model.conv_impl={setting!r} is not one of auto, xla, cpu")
    return setting


def uses_label_lookups(conv_impl: str, mesh: Mesh, dtype) -> bool:
    """Label maps convolve as lookups (`one_hot`) in the CPU form, in float32, with one
    device per process; elsewhere they stay the dense one-hot tensor. With several devices in
    one process (fake CPU devices) XLA:CPU's concurrent execution deadlocked in the
    collectives of a step holding the lookups' loop (the 8-device local-enhancer test, 40 s
    rendezvous timeout). In bfloat16 (the accelerators' recipe) the lookups' float32 sum
    costs memory: the 2048x1024 local step's figure went 11.91 -> 12.17 GB."""
    local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    return conv_impl == "cpu" and local == 1 and jnp.dtype(dtype) == jnp.float32


def reflect_pad(x: jax.Array | OneHotMap, pad: int) -> jax.Array | OneHotMap:
    """Reflection padding of `pad` pixels per side (a label map's ids are padded alike)."""
    if isinstance(x, OneHotMap):
        return x.reflect_pad(pad)
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def instance_norm(x: jax.Array, impl: str = "xla") -> jax.Array:
    """PyTorch's affine-free InstanceNorm2d over NHWC; its backward pass by autodiff (`xla`)
    or written by hand from the output (`cpu`: less memory on XLA:CPU, more on TPU; see
    `norm`)."""
    return norm.instance_norm_keeping_output(x) if impl == "cpu" else norm.instance_norm(x)


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
