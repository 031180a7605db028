"""A trained generator back from its workdir, and `--mode=predict`: translate image files."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging
from etils import epath
from jax.sharding import Mesh

from p2p_jax import checkpointing, evaluate, parallel, train, validation
from p2p_jax.data import images, pipeline
from p2p_jax.errors import MissingFileError, UserError
from p2p_jax.models import generator_downsampling


@dataclasses.dataclass(frozen=True)
class Restored:
    config: ml_collections.ConfigDict
    models: train.Pix2Pix
    mesh: Mesh
    state: train.TrainState
    step: int

    def evaluator(self) -> evaluate.Evaluator:
        return evaluate.Evaluator(self.models, self.mesh, self.config.eval.batch_size,
                                  generator_downsampling(self.config.model))


def resolve_channels(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
    """Channels left to the data (0) as the training run resolved them (`WORKDIR/config.json`),
    so predicting and exporting need no dataset."""
    saved = epath.Path(workdir) / "config.json"
    if config.dataset.input_channels and config.dataset.output_channels:
        return config
    if not saved.exists():
        return pipeline.resolve_channels(config)
    dataset = json.loads(saved.read_text())["dataset"]
    config = config.copy_and_resolve_references()
    config.dataset.input_channels = config.dataset.input_channels or dataset["input_channels"]
    config.dataset.output_channels = config.dataset.output_channels or dataset["output_channels"]
    return config


def restore(config: ml_collections.ConfigDict, workdir: str, step: int | None = None) -> Restored:
    """The checkpoint at `step` (default: latest) on this run's mesh."""
    validation.validate_config(config)
    config = resolve_channels(config, workdir)
    mesh = parallel.create_mesh(config.mesh)
    models = train.Pix2Pix.from_config(config, config.dataset.output_channels)
    target = train.initial_state(models, config, mesh)
    state, step = checkpointing.restore_state(workdir, target, step)
    logging.info("restored the checkpoint at step %d from %s", step, workdir)
    return Restored(config, models, mesh, state, step)


def _input_files(path: str) -> tuple[str, list[str]]:
    """(root, paths relative to it) of the images at `path`, a file or a folder (recursive)."""
    if os.path.isfile(path):
        return os.path.dirname(path), [os.path.basename(path)]
    if not os.path.isdir(path):
        raise MissingFileError(f"--input={path} is neither an image file nor a folder")
    found = sorted(os.path.relpath(os.path.join(d, f), path)
                   for d, _, files in os.walk(path) for f in files
                   if f.lower().endswith(images.IMAGE_EXTENSIONS))
    if not found:
        raise UserError(f"--input={path}: no images in it (looked for "
                        f"{', '.join(images.IMAGE_EXTENSIONS)})")
    return path, found


def predict(restored: Restored, input_path: str, output_dir: str,
            files_per_chunk: int = 64) -> int:
    """Translates every image under `input_path` to `output_dir/<same relative name>`, any
    sizes, batched by size; unreadable files (and images over `dataset.max_image_pixels`) are
    reported and skipped, and images over `eval.tile_pixels` are translated in overlapping
    tiles. File i (in sorted order) draws its dropout from fold_in(PRNGKey(seed), i), as image
    i of an exported model's batch. Returns the number of images written."""
    root, names = _input_files(input_path)
    config = restored.config
    evaluator = restored.evaluator()
    channels = config.dataset.input_channels
    key = train.host_key(config.seed)
    written = 0
    with tqdm.tqdm(total=len(names), unit="img", disable=jax.process_index() != 0) as bar:
        for start in range(0, len(names), files_per_chunk):
            whole, tiled = [], []  # (index, name, image)
            for index in range(start, min(start + files_per_chunk, len(names))):
                try:
                    image = images.read(os.path.join(root, names[index]),
                                        config.dataset.max_image_pixels)
                except images.BadImageError as e:
                    logging.warning("skipped: %s", e)
                    continue
                image = images.to_channels(image, channels)
                large = image.shape[0] * image.shape[1] > config.eval.tile_pixels
                (tiled if large else whole).append((index, names[index], image))
            outputs = evaluator.generate(
                restored.state, [{"A": image} for _, _, image in whole], key,
                [index for index, _, _ in whole])[0] if whole else []
            results = [(name, out) for (_, name, _), out in zip(whole, outputs, strict=True)]
            for index, name, image in tiled:
                logging.info("%s: %dx%d, over eval.tile_pixels=%d: translated in tiles", name,
                             image.shape[1], image.shape[0], config.eval.tile_pixels)
                results.append((name, evaluator.generate_tiled(
                    restored.state, image, np.asarray(jax.random.fold_in(key, index)),
                    config.eval.tile_pixels, config.eval.tile_overlap)))
            if jax.process_index() == 0:
                for name, output in results:
                    images.write(os.path.join(output_dir, name), output)
            written += len(results)
            bar.update(min(files_per_chunk, len(names) - start))
    if not written:
        raise UserError(f"--input={input_path}: none of its {len(names)} image files could be "
                        "read; see the warnings above")
    return written
