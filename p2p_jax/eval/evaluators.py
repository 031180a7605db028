"""Evaluators beyond the per-image metrics, named in `eval.evaluators`: each is built from the
eval config and the mesh, and maps (examples, generated outputs) to named scores.

To add one: a class with `from_config(eval_config, mesh)` and
`__call__(examples, outputs) -> dict[str, float]`, its name in `p2p_jax.config.choices.EVALUATORS`
and in `EVALUATORS` below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import ml_collections
import numpy as np
from jax.sharding import Mesh

from p2p_jax.config import choices
from p2p_jax.eval import fcn_score, fid


class Evaluator(Protocol):
    def __call__(self, examples: list[dict], outputs: list[np.ndarray]) -> dict[str, float]: ...


EVALUATORS: dict[str, Callable[[ml_collections.ConfigDict, Mesh], Evaluator]] = {
    "inception": fid.InceptionDistances.from_config,
    "fcn": fcn_score.FCNScore.from_config,
}
assert tuple(EVALUATORS) == choices.EVALUATORS


def build(eval_config: ml_collections.ConfigDict, mesh: Mesh) -> list[Evaluator]:
    """The `eval.evaluators` (e.g. ("inception", "fcn")), each loading its network now, so a
    missing weights file stops the run at start-up with what to do."""
    return [EVALUATORS[name](eval_config, mesh) for name in eval_config.evaluators]
