"""Spectral normalisation of the discriminator (Miyato et al. 2018; `model.spectral_norm_d`):
every convolution kernel divided by its largest singular value, estimated by one step of
power iteration per training step, so that D stays 1-Lipschitz per layer and cannot win too
fast.

It is a transformation of D's parameters in the train step, not a change to the networks:
the kernels keep their shapes and names (checkpoints, imports and exports read them as
before), and the power iteration's vectors `u` live in the train state. A kernel (k, k, in,
out) is the matrix (out, k * k * in), as PyTorch's `spectral_norm` reshapes its weight.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

PyTree = Any


def _kernels(params: PyTree) -> dict[tuple[str, ...], jax.Array]:
    return {path: leaf for path, leaf in traverse_util.flatten_dict(params).items()
            if path[-1] == "kernel"}


def _matrix(kernel: jax.Array) -> jax.Array:
    return kernel.reshape(-1, kernel.shape[-1]).T.astype(jnp.float32)  # (out, k * k * in)


def _unit(x: jax.Array) -> jax.Array:
    return x / (jnp.linalg.norm(x) + 1e-12)


def init_vectors(params: PyTree, key: jax.Array) -> PyTree:
    """A random unit vector `u` (out,) per kernel, nested as the parameters are."""
    kernels = _kernels(params)
    keys = jax.random.split(key, max(len(kernels), 1))
    return traverse_util.unflatten_dict({
        path: _unit(jax.random.normal(k, (kernel.shape[-1],), jnp.float32))
        for k, (path, kernel) in zip(keys, sorted(kernels.items()), strict=False)})


def power_iteration(params: PyTree, vectors: PyTree) -> PyTree:
    """Each `u` after one step of power iteration on its kernel (no gradient flows into it)."""
    kernels = _kernels(jax.lax.stop_gradient(params))
    flat = traverse_util.flatten_dict(vectors)
    return traverse_util.unflatten_dict({
        path: _unit(_matrix(kernels[path]) @ _unit(_matrix(kernels[path]).T @ u))
        for path, u in flat.items()})


def sigma(kernel: jax.Array, u: jax.Array) -> jax.Array:
    """The largest singular value's estimate u^T W v, v = W^T u / |W^T u| (u and v fixed;
    the gradient flows through W)."""
    w = _matrix(kernel)
    v = jax.lax.stop_gradient(_unit(w.T @ u))
    return jax.lax.stop_gradient(u) @ w @ v


def normalize(params: PyTree, vectors: PyTree) -> PyTree:
    """`params` with every kernel divided by its `sigma`."""
    flat_u = traverse_util.flatten_dict(vectors)
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({
        path: (leaf / sigma(leaf, flat_u[path]).astype(leaf.dtype) if path in flat_u else leaf)
        for path, leaf in flat.items()})
