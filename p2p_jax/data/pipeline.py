"""Grain input pipelines: per-process sharded, deterministic given the seed, checkpointable."""

from __future__ import annotations

import functools

import grain
import jax
import ml_collections
import numpy as np
from absl import logging

from p2p_jax.config.saved import saved_channels
from p2p_jax.config.sizes import image_hw
from p2p_jax.data import images, labels, sources, tasks, transforms
from p2p_jax.errors import ConfigError


class Examples:
    """A source that never stops a run on a bad file.

    An unreadable item is replaced by the next readable one (so the stream keeps its shape and
    stays a pure function of the seed); its path is logged once per process, and each example
    carries `skipped`, the number of bad items passed over to produce it, which the trainer sums
    into `data/skipped`. Only a source with no readable item at all is an error.
    """

    def __init__(self, source):
        self._source = source
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self._source)

    def name(self, index: int) -> str:
        return self._source.name(index)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        n = len(self._source)
        for skipped in range(n):
            item = (int(index) + skipped) % n
            try:
                example = self._source[item]
            except images.BadImageError as e:
                if item not in self._reported:
                    self._reported.add(item)
                    logging.warning("skipping unusable example: %s", e)
                continue
            return {**example, "skipped": np.int32(skipped)}
        raise sources.DatasetError(f"every example in {self._source.where} is unreadable; see the "
                                "warnings above for each file and replace the dataset")

    def __repr__(self) -> str:
        return f"Examples({self._source!r})"


def _read_options(dataset: ml_collections.ConfigDict) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=dataset.read_threads,
                             prefetch_buffer_size=dataset.prefetch_buffer_size)


def local_batch_size(global_batch_size: int, process_count: int) -> int:
    if global_batch_size % process_count:
        raise ConfigError(f"batch_size={global_batch_size} does not divide over "
                         f"{process_count} processes; use a multiple of {process_count}")
    return global_batch_size // process_count


def _derive_and_convert(example: dict[str, np.ndarray], rng: np.random.Generator,
                        dataset: ml_collections.ConfigDict,
                        channels: dict[str, int]) -> dict[str, np.ndarray]:
    """The derived task's A, channel conversion (label maps keep their ids), and the
    instance-boundary map 'E' from the instance ids 'I'."""
    example = tasks.apply(example, rng, dataset)
    out = {k: example[k] if (k == "A" and dataset.label_nc) else
           images.to_channels(example[k], c) for k, c in channels.items()}
    if dataset.instance_maps:
        out["E"] = labels.instance_boundaries(example["I"])
    return out


def _pictures(example: dict[str, np.ndarray], task: str) -> dict[str, np.ndarray]:
    """The maps a task reads: a pair (and its instance map); for derived tasks only the photo
    B (A is derived after the crop)."""
    keys = ("A", "B", "I") if task == "paired" else ("B",)
    return {k: example[k] for k in keys if k in example}


def nearest_keys(dataset: ml_collections.ConfigDict) -> frozenset[str]:
    """The maps resized by nearest neighbour: label maps' class ids and instance ids."""
    return frozenset({"A", "I"} if dataset.label_nc else {"I"})


def _train_transform(example: dict[str, np.ndarray], rng: np.random.Generator,
                     dataset: ml_collections.ConfigDict,
                     channels: dict[str, int]) -> dict[str, np.ndarray]:
    pictures = transforms.preprocess(_pictures(example, dataset.task), rng, dataset.preprocess,
                                     dataset.load_size, dataset.image_size, dataset.flip,
                                     nearest_keys(dataset))
    height, width = next(iter(pictures.values())).shape[:2]
    if (height, width) != image_hw(dataset.image_size):
        raise sources.DatasetError(
            f"dataset.preprocess={dataset.preprocess!r} gives {height}x{width} training images "
            f"(from the files' own size), but a training batch is dataset.image_size="
            f"{dataset.image_size}: use dataset.preprocess='resize_and_crop', 'crop' or "
            "'scale_width_and_crop', or files of that size")
    return {**_derive_and_convert(pictures, rng, dataset, channels),
            "skipped": example["skipped"]}


# Examples read, spread over the training split, to find its channels.
CHANNEL_SAMPLE = 16


def data_channels(config: ml_collections.ConfigDict,
                  train_source: Examples | None = None) -> dict[str, int]:
    """Channels of A and B: the config's, or (where 0) the most that a sample of the training
    examples has. A dataset mixing gray and colour images trains a colour model (a gray image
    repeats to 3 channels losslessly; colour would lose its colour), and the mix is named."""
    dataset = config.dataset
    if dataset.input_channels and dataset.output_channels:
        return {"A": dataset.input_channels, "B": dataset.output_channels}
    if train_source is None:
        train_source = Examples(sources.make_source(dataset, "train", config.seed))
    count = min(CHANNEL_SAMPLE, len(train_source))
    seen = {"A": [], "B": []}
    for index in np.linspace(0, len(train_source) - 1, count).astype(int):
        pictures = tasks.apply(_pictures(train_source[int(index)], dataset.task),
                               np.random.default_rng(0), dataset)
        for key in seen:
            seen[key].append(pictures[key].shape[2])
    channels = {}
    for key, configured in (("A", dataset.input_channels), ("B", dataset.output_channels)):
        channels[key] = configured or max(seen[key])
        if not configured and len(set(seen[key])) > 1:
            fewer = sum(c < channels[key] for c in seen[key])
            name = "input_channels" if key == "A" else "output_channels"
            logging.warning(
                "dataset.%s: %d of %d sampled %s images have fewer than %d channels (gray and "
                "colour mixed); the model takes %d and converts the others (set "
                "dataset.%s to choose)", name, fewer, len(seen[key]),
                "input" if key == "A" else "target", channels[key], channels[key], name)
    return channels


def resolve_channels(config: ml_collections.ConfigDict, workdir: str | None = None
                     ) -> ml_collections.ConfigDict:
    """A copy of `config` with `dataset.input_channels`/`output_channels` filled in where 0:
    as the training run in `workdir` resolved them (its config.json), else from the data."""
    dataset = config.dataset
    if dataset.label_nc and not dataset.input_channels:  # A is one channel of class ids.
        config = config.copy_and_resolve_references()
        config.dataset.input_channels = 1
        dataset = config.dataset
    if dataset.input_channels and dataset.output_channels:
        return config
    trained = saved_channels(workdir) if workdir else None
    channels = trained or data_channels(config)
    config = config.copy_and_resolve_references()
    config.dataset.input_channels = config.dataset.input_channels or channels["A"]
    config.dataset.output_channels = config.dataset.output_channels or channels["B"]
    return config


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
    apply). Batches hold uint8 'A' (an image, or class ids with `label_nc`), 'B', 'E' (instance
    boundaries, with `instance_maps`) and int32 'skipped'.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    dataset = config.dataset
    source = Examples(sources.make_source(dataset, "train", config.seed))
    transform = functools.partial(_train_transform, dataset=dataset,
                                  channels=data_channels(config, source))
    transform(source[0], np.random.default_rng(0))  # Sizes that cannot batch: said at start-up.
    per_process = local_batch_size(config.batch_size, process_count)
    ds = (grain.MapDataset.source(source)
          .shuffle(seed=config.seed)
          .repeat(None)
          .random_map(transform, seed=config.seed)
          .batch(per_process, drop_remainder=True)[process_index::process_count][start_batch:])
    it = ds.to_iter_dataset(_read_options(dataset))
    if dataset.worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=dataset.worker_count))
    return iter(it)


def eval_examples(config: ml_collections.ConfigDict, num_examples: int | None = None,
                  split: str | None = None) -> list[dict]:
    """The first examples of the eval split in their evaluation view (full size unless the
    preprocessing resizes to squares), each {'A', 'B', 'name'} (and 'E' with instance maps);
    sizes may differ."""
    dataset = config.dataset
    source = Examples(sources.make_source(dataset, split or config.eval.split, config.seed))
    channels = data_channels(config)
    count = len(source) if num_examples is None else min(num_examples, len(source))
    examples = []
    for index in range(count):
        example = transforms.eval_view(_pictures(source[index], dataset.task),
                                       dataset.preprocess, dataset.load_size, dataset.image_size,
                                       nearest_keys(dataset))
        rng = np.random.default_rng([config.seed, index])  # Same noise every evaluation.
        examples.append({**_derive_and_convert(example, rng, dataset, channels),
                         "name": source.name(index)})
    return examples
