"""Normalisation layers as the reference uses them: batch (over the global batch), instance
(affine-free, like PyTorch's InstanceNorm2d) or none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax import ops

Layer = Callable[[jax.Array], jax.Array]


def norm_scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    """The reference's batch-norm scale initialisation, N(1, 0.02)."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def make_norm(norm: str, train: bool, dtype: Any, impl: str = "xla") -> Callable[..., Layer]:
    """Returns a factory of norm layers; call it inside a compact method.

    `batch` normalises over the global batch (under `jit` with a sharded batch the mean is
    computed across devices). `instance` is the reference's affine-free InstanceNorm2d, in
    the form `impl` (the resolved `model.conv_impl`) picks (`ops.instance_norm`).
    """
    if norm == "batch":
        return lambda name=None: nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
            scale_init=norm_scale_init, name=name)
    if norm == "instance":
        return lambda name=None: (lambda x: ops.instance_norm(x, impl))
    if norm == "none":
        return lambda name=None: (lambda x: x)
    raise ValueError(f"model.norm={norm!r} is not one of batch, instance, none")


def uses_bias(norm: str) -> bool:
    """The reference drops conv biases that a batch norm would cancel."""
    return norm != "batch"
