"""Fault injection (`debug.nonfinite_steps`): chosen steps get a batch of NaN targets, so the
train step's non-finite guard and `nan_patience` can be seen to work (tests, drills).

It lives here, in the loop's hands: the production step never knows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp


@functools.lru_cache
def _nan_like(sharding):
    return jax.jit(lambda a: jnp.full(a.shape, jnp.nan, jnp.float32), out_shardings=sharding)


def poisoned(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The batch with its targets replaced by float NaN images of the same shape and sharding
    (NaN under any value mapping), so the L1 term is NaN."""
    return {**batch, "B": _nan_like(batch["B"].sharding)(batch["B"])}


def with_nonfinite_steps(step_fn: Callable, steps: tuple[int, ...],
                         compile_for: Callable) -> Callable:
    """`run(state, batch, step)`: `step_fn(state, batch)`, except that the steps numbered in
    `steps` (1-based, as logged) run on a poisoned batch, through a second executable that
    `compile_for(batch)` compiles at first use."""
    poisoned_fn = []

    def run(state, batch, step: int):
        if step not in steps:
            return step_fn(state, batch)
        bad = poisoned(batch)
        if not poisoned_fn:
            poisoned_fn.append(compile_for(bad))
        return poisoned_fn[0](state, bad)

    return run
