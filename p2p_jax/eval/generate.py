"""Generator evaluation on images of any size: pad to the network's multiple, crop back, score.

Examples are grouped by size; each group runs in device-divisible batches through one jitted
function per size (generate, crop, metrics), so a dataset of uniform size compiles once.
"""

from __future__ import annotations

import functools
from collections import defaultdict

import jax
import numpy as np
from jax.sharding import Mesh

from p2p_jax import parallel
from p2p_jax.eval import metrics, tiles
from p2p_jax.sizes import downsampling_factor
from p2p_jax.train import step as train_step
from p2p_jax.train.state import Recipe, Setup, TrainState


def pad_to_multiple(images: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-pads (N, H, W, C) at the bottom/right up to multiples of `multiple`."""
    h, w = images.shape[1:3]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not pad_h and not pad_w:
        return images
    return np.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


# The keys of an example the generator reads: the image or label map, the boundary map.
INPUTS = ("A", "E")


class Evaluator:
    """Translates images of any sizes (uint8) and scores outputs against targets."""

    def __init__(self, recipe: Recipe, mesh: Mesh, batch_size: int, multiple: int):
        self._mesh, self._multiple = mesh, multiple
        self._batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
        replicated = parallel.replicated(mesh)

        @functools.partial(jax.jit, static_argnums=(4, 5), out_shardings=replicated)
        def translate(state, inputs, indices, key, height, width):
            keys = train_step.image_keys(key, indices)
            return train_step.to_uint8(
                train_step.generate(recipe, state.g_params, state.g_batch_stats, inputs, keys)
                [:, :height, :width])

        @functools.partial(jax.jit, out_shardings=replicated)
        def score(outputs, targets):
            return metrics.image_metrics(train_step.to_float(outputs),
                                         train_step.to_float(targets))

        self._translate, self._score = translate, score

    @classmethod
    def for_setup(cls, setup: Setup) -> Evaluator:
        """The evaluator for a built or restored run, at its `eval.batch_size`."""
        return cls(setup.recipe, setup.mesh, setup.config.eval.batch_size,
                   downsampling_factor(setup.config.model))

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def generate(self, state: TrainState, examples: list[dict[str, np.ndarray]],
                 key: np.ndarray, indices: list[int] | None = None,
                 batch_size: int | None = None
                 ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """(uint8 outputs in example order, per-image metrics where examples have 'B'). A metric
        the size of some images does not allow (MS-SSIM below 161 px) is NaN for those.

        `key` is a host PRNG key (uint32[2]); image i draws its dropout from
        fold_in(key, indices[i]) (default: its position), so an output does not depend on the
        batch, the device count or the process count it was computed with. `batch_size`
        overrides the evaluator's (rounded up to the device count)."""
        devices = self._mesh.devices.size
        batch_size = (self._batch_size if batch_size is None
                      else -(-batch_size // devices) * devices)
        indices = list(range(len(examples))) if indices is None else list(indices)
        device_key = parallel.replicated_from_host(key, self._mesh)  # Explicit copies only:
        groups = defaultdict(list)  # the loop runs under a transfer guard.
        for position, example in enumerate(examples):
            groups[example["A"].shape].append(position)
        outputs: list[np.ndarray | None] = [None] * len(examples)
        per_image: dict[str, np.ndarray] = {}
        for positions in groups.values():
            for start in range(0, len(positions), batch_size):
                chunk = positions[start:start + batch_size]
                out, scores = self._run_batch(state, [examples[i] for i in chunk],
                                              [indices[i] for i in chunk], device_key,
                                              _rows(len(chunk), devices, batch_size))
                for row, position in enumerate(chunk):
                    outputs[position] = out[row]
                for name, values in scores.items():
                    column = per_image.setdefault(name, np.full(len(examples), np.nan))
                    column[chunk] = values
        return outputs, per_image

    def _run_batch(self, state, examples, indices, key, batch_size
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        real = len(examples)
        pad = batch_size - real  # Padding never changes the real rows (per-image norm).
        keys = [k for k in ("A", "E", "B") if k in examples[0]]
        batch = {k: np.stack([e[k] for e in examples] + [examples[-1][k]] * pad) for k in keys}
        batch["index"] = np.asarray(indices + [indices[-1]] * pad, np.uint32)
        height, width = batch["A"].shape[1:3]
        for k in INPUTS:  # Edge padding: label ids and boundaries stay valid.
            if k in batch:
                batch[k] = pad_to_multiple(batch[k], self._multiple)
        device = parallel.global_batch_from_host_copy(batch, self._mesh)
        inputs = {k: device[k] for k in INPUTS if k in device}
        outputs = self._translate(state, inputs, device["index"], key, height, width)
        scores = self._score(outputs, device["B"]) if "B" in device else {}
        outputs, scores = jax.device_get((outputs, scores))
        return outputs[:real], {k: v[:real] for k, v in scores.items()}

    def generate_tiled(self, state: TrainState, image: np.ndarray | dict[str, np.ndarray],
                       key: np.ndarray, max_pixels: int, overlap: int) -> np.ndarray:
        """One input too large to generate whole (an image, or {'A', 'E'}), through
        overlapping tiles of at most `max_pixels`, one tile per device at a time (bounded
        memory). Tile t draws from fold_in(key, t); per-image normalisation
        (model.eval_mode=False) becomes per tile."""
        side = tiles.tile_side(max_pixels, self._multiple)
        with_edges = isinstance(image, dict)  # Label ids and their boundaries, tiled together.
        if with_edges:
            image = np.concatenate([image["A"], image["E"]], -1)

        def translate(pieces, first):
            examples = [{"A": piece[..., :-1], "E": piece[..., -1:]} if with_edges
                        else {"A": piece} for piece in pieces]
            indices = range(first, first + len(pieces))
            return self.generate(state, examples, key, indices, batch_size=1)[0]

        return tiles.translate_tiled(image, side, overlap, translate)

    def evaluate(self, state: TrainState, examples: list[dict[str, np.ndarray]],
                 key: np.ndarray, extra=()) -> dict[str, float]:
        """Mean per-image metrics, plus whatever the `extra` evaluators compute from the
        outputs (FID/KID, FCN-score)."""
        return self.evaluate_all(state, examples, key, extra)[2]

    def evaluate_all(self, state, examples, key, extra=()):
        """(outputs, per-image metrics, summary metrics)."""
        outputs, scores = self.generate(state, examples, key)
        summary = mean_metrics(scores)
        for evaluator in extra:
            summary.update(evaluator(examples, outputs))
        return outputs, scores, summary


def mean_metrics(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over the images each metric applies to; metrics that applied to none are left out."""
    return {k: float(np.nanmean(v)) for k, v in scores.items() if np.isfinite(v).any()}


def _rows(count: int, devices: int, batch_size: int) -> int:
    """The batch that `count` images run in: a power of two times the device count, at most
    `batch_size`. One large photo is not padded to a full batch of copies (memory), and a few
    sizes of batch cover every count (compilations)."""
    per_device = -(-count // devices)
    return min(batch_size, devices * (1 << (per_device - 1).bit_length()))
