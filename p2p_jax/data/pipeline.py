"""Grain input pipelines: per-process sharded, deterministic given the seed, checkpointable."""

from __future__ import annotations

import functools

import grain
import jax
import ml_collections
import numpy as np
from absl import logging

from p2p_jax.config.checks import check_resolved_data, validate_config
from p2p_jax.config.saved import saved_dataset
from p2p_jax.config.sizes import image_hw
from p2p_jax.data import images, labels, sources, tasks, transforms, values
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
                        dataset: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """The derived task's A, conversion to the resolved channels and pixel types (label maps
    keep their ids), and the instance-boundary map 'E' from the instance ids 'I'."""
    example = tasks.apply(example, rng, dataset)
    out = {}
    for key, side in (("A", "input"), ("B", "output")):
        if key == "A" and dataset.label_nc:
            out[key] = example[key]
            continue
        name = _what(key)
        image = images.to_channels(example[key], dataset[f"{side}_channels"], name)
        out[key] = images.convert(image, dataset[f"{side}_dtype"], name)
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
                     dataset: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
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
    return {**_derive_and_convert(pictures, rng, dataset), "skipped": example["skipped"]}


def _what(key: str) -> str:
    """How messages name the images of `key`."""
    return "the input image" if key == "A" else "the target image"


# Examples read, spread over the training split, to find its channels and pixel types.
CHANNEL_SAMPLE = 16
_SIDES = (("A", "input"), ("B", "output"))


def _sampled(config: ml_collections.ConfigDict, train_source: Examples | None,
             count: int) -> dict[str, list[np.ndarray]]:
    """Up to `count` training examples spread over the split, as the tasks make them."""
    dataset = config.dataset
    if train_source is None:
        train_source = Examples(sources.make_source(dataset, "train", config.seed))
    count = min(count, len(train_source))
    seen = {"A": [], "B": []}
    for index in np.linspace(0, len(train_source) - 1, count).astype(int):
        pictures = tasks.apply(_pictures(train_source[int(index)], dataset.task),
                               np.random.default_rng(0), dataset)
        for key in seen:
            seen[key].append(pictures[key])
    return seen


def _resolve_side(dataset: ml_collections.ConfigDict, key: str, side: str,
                  sample: list[np.ndarray]) -> None:
    """Fills one side's channels and dtype (from `sample` where the config leaves them to the
    data) and its value range (`normalize`: the dtype's, the sample's percentiles, or given)."""
    name = f"{side}_channels"
    counts = [image.shape[2] for image in sample]
    if not dataset[name]:
        dataset[name] = max(counts)
        if len(set(counts)) > 1:
            logging.warning(
                "dataset.%s: %d of %d sampled %s images have fewer than %d channels (gray and "
                "colour mixed); the model takes %d and converts the others (set dataset.%s to "
                "choose)", name, sum(c < dataset[name] for c in counts), len(counts),
                "input" if key == "A" else "target", dataset[name], dataset[name], name)
    if not dataset[f"{side}_dtype"]:
        dataset[f"{side}_dtype"] = values.widest([image.dtype.name for image in sample])
    norm = dataset.normalize
    if norm[f"{side}_low"]:
        return
    if norm[side] == "dtype":
        low, high = values.DTYPE_RANGES[dataset[f"{side}_dtype"]]
        norm[f"{side}_low"], norm[f"{side}_high"] = (low,), (high,)
        return
    what = _what(key)
    converted = [images.convert(images.to_channels(image, dataset[name], what),
                                dataset[f"{side}_dtype"], what) for image in sample]
    low, high = values.percentile_range(converted, tuple(norm.percentiles))
    norm[f"{side}_low"], norm[f"{side}_high"] = low, high
    logging.info("dataset.normalize.%s=percentile %s over %d training examples: low %s, high "
                 "%s (saved in config.json)", side, tuple(norm.percentiles), len(sample),
                 [f"{v:.6g}" for v in low], [f"{v:.6g}" for v in high])


def _resolved(dataset: ml_collections.ConfigDict) -> bool:
    sides = [side for key, side in _SIDES if not (key == "A" and dataset.label_nc)]
    return all(dataset[f"{side}_channels"] and dataset[f"{side}_dtype"]
               and dataset.normalize[f"{side}_low"] for side in sides)


def _from_saved(dataset: ml_collections.ConfigDict, saved: dict) -> None:
    """Fills what the config leaves open from a run's saved dataset values."""
    for side in ("input", "output"):
        for key in (f"{side}_channels", f"{side}_dtype"):
            dataset[key] = dataset[key] or saved[key]
        if not dataset.normalize[f"{side}_low"]:
            for end in ("low", "high"):
                dataset.normalize[f"{side}_{end}"] = tuple(saved["normalize"][f"{side}_{end}"])


def resolve_data(config: ml_collections.ConfigDict, workdir: str | None = None,
                 train_source: Examples | None = None) -> ml_collections.ConfigDict:
    """A copy of `config` with what the data decides filled in: each side's channels and
    pixel type where the config leaves them open (0, ""), and its value range
    (`dataset.normalize`): as the training run in `workdir` resolved them (its config.json),
    else from a sample of the training split. A dataset mixing gray and colour images trains
    a colour model (a gray image repeats to 3 channels losslessly; colour would lose its
    colour), and the mix is named; mixed pixel types take the widest."""
    config = config.copy_and_resolve_references()
    dataset = config.dataset
    if dataset.label_nc:  # A is one channel of class ids.
        dataset.input_channels, dataset.input_dtype = 1, "uint8"
    if not _resolved(dataset):
        saved = saved_dataset(workdir) if workdir else None
        if saved is not None:
            _from_saved(dataset, saved)
    if not _resolved(dataset):
        sides = [(key, side) for key, side in _SIDES if not (key == "A" and dataset.label_nc)]
        norm = dataset.normalize
        percentiles = any(norm[side] == "percentile" and not norm[f"{side}_low"]
                          for _, side in sides)
        open_types = any(not (dataset[f"{side}_channels"] and dataset[f"{side}_dtype"])
                         for _, side in sides)
        count = max(CHANNEL_SAMPLE, norm.sample if percentiles else 0)
        sample = (_sampled(config, train_source, count) if percentiles or open_types
                  else {"A": [], "B": []})
        for key, side in sides:
            _resolve_side(dataset, key, side, sample[key])
    validate_config(config)  # The resolved values, e.g. a range per channel.
    check_resolved_data(config)
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
    apply). Batches hold 'A' (an image, or uint8 class ids with `label_nc`) and 'B' in their
    resolved pixel types, uint8 'E' (instance boundaries, with `instance_maps`) and int32
    'skipped'.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    dataset = config.dataset
    source = Examples(sources.make_source(dataset, "train", config.seed))
    if not _resolved(dataset):
        config = resolve_data(config, train_source=source)
        dataset = config.dataset
    transform = functools.partial(_train_transform, dataset=dataset)
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
    if not _resolved(dataset):
        config = resolve_data(config)
        dataset = config.dataset
    source = Examples(sources.make_source(dataset, split or config.eval.split, config.seed))
    count = len(source) if num_examples is None else min(num_examples, len(source))
    examples = []
    for index in range(count):
        example = transforms.eval_view(_pictures(source[index], dataset.task),
                                       dataset.preprocess, dataset.load_size, dataset.image_size,
                                       nearest_keys(dataset))
        rng = np.random.default_rng([config.seed, index])  # Same noise every evaluation.
        examples.append({**_derive_and_convert(example, rng, dataset),
                         "name": source.name(index)})
    return examples
