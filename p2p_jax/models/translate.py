"""A generator run on images of any size: grouped by size, padded to the network's multiple
and cropped back, batched over the mesh, and tiled where an image is too large to run whole.

Each size runs through one jitted function (generate, crop, and a score where the caller gives
one), so a dataset of uniform size compiles once.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from p2p_jax import parallel
from p2p_jax.config.sizes import downsampling_factor
from p2p_jax.models import generation, tiles
from p2p_jax.models.generation import Generator, GeneratorVariables


def pad_to_multiple(images: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-pads (N, H, W, C) at the bottom/right up to multiples of `multiple`."""
    h, w = images.shape[1:3]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not pad_h and not pad_w:
        return images
    return np.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


# The keys of an example the generator reads: the image or label map, the boundary map.
INPUTS = ("A", "E")

# Per-image scores of outputs against targets, both float [-1, 1]: {name: (N,) array}.
Score = Callable[[jax.Array, jax.Array], dict[str, jax.Array]]


class Translator:
    """Translates images of any sizes with one generator on one mesh, into the targets' pixel
    type (`generator.output_values`); with `score`, also scores the outputs of examples that
    carry a target 'B' (both mapped to [-1, 1] as training maps them: the data's range)."""

    def __init__(self, generator: Generator, mesh: Mesh, batch_size: int, multiple: int,
                 score: Score | None = None):
        self._mesh, self._multiple = mesh, multiple
        self._batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
        replicated = parallel.replicated(mesh)

        @functools.partial(jax.jit, static_argnums=(4, 5), out_shardings=replicated)
        def translate(variables, inputs, indices, key, height, width):
            keys = generation.image_keys(key, indices)
            return generation.to_data(
                generation.generate(generator, variables, inputs, keys)[:, :height, :width],
                generator.output_values)

        self._translate = translate
        self._score = score and jax.jit(
            lambda outputs, targets: score(
                generation.to_float(outputs, generator.output_values),
                generation.to_float(targets, generator.output_values)),
            out_shardings=replicated)

    @classmethod
    def for_config(cls, generator: Generator, mesh: Mesh, config,
                   score: Score | None = None) -> Translator:
        """At the config's `eval.batch_size`, padding to its model's multiple."""
        return cls(generator, mesh, config.eval.batch_size, downsampling_factor(config.model),
                   score)

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def generate(self, variables: GeneratorVariables, examples: list[dict[str, np.ndarray]],
                 key: np.ndarray, indices: list[int] | None = None,
                 batch_size: int | None = None,
                 on_batch: Callable[[int], object] | None = None
                 ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """(outputs in example order, per-image scores where examples have 'B' and the
        translator a `score`). A score the size of some images does not allow (MS-SSIM below
        161 px) is NaN for those.

        `key` is a host PRNG key (uint32[2]); image i draws its dropout from
        fold_in(key, indices[i]) (default: its position), so an output does not depend on the
        batch, the device count or the process count it was computed with. `batch_size`
        overrides the translator's (rounded up to the device count); `on_batch` is told how
        many images each batch translated (a progress bar)."""
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
                out, scores = self._run_batch(variables, [examples[i] for i in chunk],
                                              [indices[i] for i in chunk], device_key,
                                              _rows(len(chunk), devices, batch_size))
                for row, position in enumerate(chunk):
                    outputs[position] = out[row]
                for name, values in scores.items():
                    column = per_image.setdefault(name, np.full(len(examples), np.nan))
                    column[chunk] = values
                if on_batch is not None:
                    on_batch(len(chunk))
        return outputs, per_image

    def _run_batch(self, variables, examples, indices, key, batch_size
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
        outputs = self._translate(variables, inputs, device["index"], key, height, width)
        scores = self._score(outputs, device["B"]) if "B" in device and self._score else {}
        outputs, scores = jax.device_get((outputs, scores))
        return outputs[:real], {k: v[:real] for k, v in scores.items()}

    def generate_tiled(self, variables: GeneratorVariables,
                       image: np.ndarray | dict[str, np.ndarray], key: np.ndarray,
                       max_pixels: int, overlap: int) -> np.ndarray:
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
            return self.generate(variables, examples, key, indices, batch_size=1)[0]

        return tiles.translate_tiled(image, side, overlap, translate)


def _rows(count: int, devices: int, batch_size: int) -> int:
    """The batch that `count` images run in: a power of two times the device count, at most
    `batch_size`. One large photo is not padded to a full batch of copies (memory), and a few
    sizes of batch cover every count (compilations)."""
    per_device = -(-count // devices)
    return min(batch_size, devices * (1 << (per_device - 1).bit_length()))
