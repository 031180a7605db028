"""Grain input pipelines: per-process sharded, deterministic given the seed, checkpointable."""

from __future__ import annotations

import functools

import grain
import jax
import ml_collections
import numpy as np

from p2p_jax.data import sources, transforms


def _read_options(dataset: ml_collections.ConfigDict) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=dataset.read_threads,
                             prefetch_buffer_size=dataset.prefetch_buffer_size)


def local_batch_size(global_batch_size: int, process_count: int) -> int:
    if global_batch_size % process_count:
        raise ValueError(f"batch_size={global_batch_size} does not divide over "
                         f"{process_count} processes; use a multiple of {process_count}")
    return global_batch_size // process_count


def create_train_iterator(config: ml_collections.ConfigDict, process_index: int | None = None,
                          process_count: int | None = None,
                          start_batch: int = 0) -> grain.DatasetIterator:
    """Endless shuffled, augmented batches: this process's slice of each global batch.

    The global stream (shuffle, reshuffled every epoch, and per-example augmentation) is a pure
    function of the seed, and global batch k is stream elements [k*B, (k+1)*B), split into
    contiguous per-process slices. So every process count sees the same global batches, each
    process reads and decodes only its own examples, and an epoch's examples are split
    disjointly among processes. `start_batch` positions the stream at a global batch index
    (resuming with a different process count, where Grain's saved per-process state does not
    apply).
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    dataset = config.dataset
    source = sources.make_source(dataset, "train", config.seed)
    augment = functools.partial(
        transforms.preprocess_pair, mode=dataset.preprocess, load_size=dataset.load_size,
        crop_size=dataset.image_size, flip=dataset.flip)
    per_process = local_batch_size(config.batch_size, process_count)
    ds = (grain.MapDataset.source(source)
          .shuffle(seed=config.seed)
          .repeat(None)
          .random_map(augment, seed=config.seed)
          .batch(per_process, drop_remainder=True)[process_index::process_count][start_batch:])
    it = ds.to_iter_dataset(_read_options(dataset))
    if dataset.worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=dataset.worker_count))
    return iter(it)


def resize_for_eval(pair: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Deterministic evaluation view: both images resized to the training resolution."""
    return {k: transforms.resize(v, size, size) for k, v in pair.items()}


def eval_examples(config: ml_collections.ConfigDict, num_examples: int | None = None
                  ) -> dict[str, np.ndarray]:
    """The first examples of the eval split as one uint8 batch (for samples and eval)."""
    dataset = config.dataset
    source = sources.make_source(dataset, dataset.eval_split, config.seed)
    count = len(source) if num_examples is None else min(num_examples, len(source))
    pairs = [resize_for_eval(source[i], dataset.image_size) for i in range(count)]
    return {k: np.stack([p[k] for p in pairs]) for k in ("A", "B")}
