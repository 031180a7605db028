"""A generator's outputs scored against the targets: per-image metrics on the device, their
means, and the summaries of the extra evaluators (FID/KID, FCN-score)."""

from __future__ import annotations

from collections.abc import Callable

import ml_collections
import numpy as np
from jax.sharding import Mesh

from p2p_jax.eval import metrics
from p2p_jax.models.generation import Generator, GeneratorVariables
from p2p_jax.models.translate import Translator


def scoring_translator(generator: Generator, mesh: Mesh, config: ml_collections.ConfigDict
                       ) -> Translator:
    """A translator at the config's evaluation batch size that also scores each output
    (`metrics.image_metrics`) in the program that makes it."""
    return Translator.for_config(generator, mesh, config, score=metrics.image_metrics)


def evaluate(translator: Translator, variables: GeneratorVariables,
             examples: list[dict[str, np.ndarray]], key: np.ndarray, extra=(),
             on_batch: Callable[[int], object] | None = None
             ) -> tuple[list[np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """(outputs, per-image metrics, summary): the summary is the mean of each per-image metric
    plus whatever the `extra` evaluators compute from the outputs."""
    outputs, scores = translator.generate(variables, examples, key, on_batch=on_batch)
    summary = mean_metrics(scores)
    for evaluator in extra:
        summary.update(evaluator(examples, outputs))
    return outputs, scores, summary


def mean_metrics(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over the images each metric applies to; metrics that applied to none are left out."""
    return {k: float(np.nanmean(v)) for k, v in scores.items() if np.isfinite(v).any()}
