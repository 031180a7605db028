"""Comparison of train states computed with different reduction orders."""

import jax
import numpy as np


def assert_states_match(a, b, tight: float = 2e-5, loose: float = 5e-4) -> None:
    """Equal up to float reassociation: nearly every element within `tight`, all within `loose`.

    Adam divides by sqrt(v), so where a gradient is ~0 a reordered sum can move one element by
    a noticeable part of a learning-rate step; that is reassociation, not a different update.
    """
    def check(x, y):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        np.testing.assert_allclose(x, y, rtol=0, atol=loose)
        assert np.mean(np.abs(x - y) > tight + 1e-3 * np.abs(y)) < 1e-3

    jax.tree.map(check, a, b)
