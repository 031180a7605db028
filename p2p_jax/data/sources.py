"""Random-access sources of examples {'A', 'B'} (HWC arrays as decoded: uint8 photos, or
uint16 / float32 data of any channels), chosen by `dataset.source`.

Files become *records* (encoded bytes under 'AB' for side-by-side files, 'A'/'B' for pairs, 'B'
alone for plain photos of a derived task; 'L' for a label map of class ids and 'I' for an
instance map, beside a photo 'B') and records become examples by one decoder, so image folders
and the ArrayRecord shards packed from them read identically. A label map becomes A as
(H, W, 1) uint8 class ids, an instance map 'I' as (H, W) int32 instance ids.
"""

from __future__ import annotations

import os
import time

import grain
import ml_collections
import numpy as np
from absl import logging
from flax import serialization

from p2p_jax import fileio
from p2p_jax.config.choices import SOURCES
from p2p_jax.data import cityscapes, images
from p2p_jax.data.synthetic import SyntheticScenes
from p2p_jax.data.synthetic_cells import SyntheticCells
from p2p_jax.errors import MissingFileError

Record = dict[str, bytes]

PALETTES = {"cityscapes": cityscapes.LABEL_COLOURS}  # As named in p2p_jax.config.choices.PALETTES.


class DatasetError(MissingFileError):
    """A dataset path or layout that cannot be used; the message names it and the fix."""


def decode_record(record: Record, name: str, direction: str,
                  max_pixels: int = images.DEFAULT_MAX_PIXELS) -> dict[str, np.ndarray]:
    """Decodes one record; raises BadImageError naming `name` for anything unusable."""
    if "AB" in record:
        ab = images.decode(record["AB"], name, max_pixels)
        if ab.shape[1] % 2:
            raise images.BadImageError(
                f"{name}: width {ab.shape[1]} is odd, so the A and B halves differ in size")
        half = ab.shape[1] // 2
        example = {"A": ab[:, :half], "B": ab[:, half:]}
    else:
        example = {k: images.decode(v, name, max_pixels) for k, v in record.items()
                   if k in ("A", "B")}
        if "L" in record:
            example["A"] = _class_ids(images.decode_map(record["L"], name, max_pixels), name)
        if "I" in record:
            example["I"] = images.decode_map(record["I"], name, max_pixels).astype(np.int32)
        sizes = {k: v.shape[:2] for k, v in example.items()}
        if len(set(sizes.values())) > 1:
            raise images.BadImageError(f"{name}: its parts differ in size ({sizes}); a pair "
                                       "must match")
    if direction == "BtoA" and "L" not in record and "A" in example and "B" in example:
        example = {"A": example["B"], "B": example["A"]}
    return example


def _class_ids(ids: np.ndarray, name: str) -> np.ndarray:
    if ids.max(initial=0) > 255:
        raise images.BadImageError(f"{name}: label ids up to {ids.max()}; at most 255 classes")
    return ids.astype(np.uint8)[:, :, None]


def _image_files(folder: str) -> list[str]:
    if not fileio.is_dir(folder):
        raise DatasetError(f"dataset folder {folder} does not exist; check dataset.path "
                           "and the expected layout (see docs/datasets.md)")
    return fileio.list_files(folder, images.IMAGE_EXTENSIONS)


class FileRecords:
    """Records read from image files: each item maps record keys to file paths."""

    def __init__(self, items: list[tuple[str, dict[str, str]]], direction: str, where: str,
                 max_pixels: int = images.DEFAULT_MAX_PIXELS):
        if not items:
            raise DatasetError(f"no images in {where}; add image files or fix dataset.path")
        self._items, self._direction, self.where = items, direction, where
        self._max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self._items)

    def name(self, index: int) -> str:
        return self._items[index][0]

    def record(self, index: int) -> Record:
        record = {}
        for key, path in self._items[index][1].items():
            try:
                record[key] = fileio.read_bytes(path)
            except Exception as e:  # OSError locally; TensorFlow's gfile errors for gs://.
                raise images.BadImageError(f"{path}: {getattr(e, 'strerror', None) or e}") from e
        return record

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return decode_record(self.record(index), self.path(index), self._direction,
                             self._max_pixels)

    def path(self, index: int) -> str:
        return ", ".join(self._items[index][1].values())

    def __repr__(self) -> str:
        return f"FileRecords({len(self)} items in {self.where})"


def aligned_folder(path: str, split: str, direction: str,
                   max_pixels: int = images.DEFAULT_MAX_PIXELS) -> FileRecords:
    """The pix2pix "aligned" format: each file holds A | B side by side, in `path/split/`."""
    folder = os.path.join(path, split)
    items = [(f, {"AB": os.path.join(folder, f)}) for f in _image_files(folder)]
    return FileRecords(items, direction, folder, max_pixels)


def paired_folder(path: str, split: str, direction: str,
                  max_pixels: int = images.DEFAULT_MAX_PIXELS) -> FileRecords:
    """`path/A/split/` and `path/B/split/` (pix2pix's combine_A_and_B.py layout), matched by
    file name; names present on one side only are reported and left out."""
    folder_a, folder_b = (os.path.join(path, side, split) for side in ("A", "B"))
    names_a, names_b = set(_image_files(folder_a)), set(_image_files(folder_b))
    for side, unmatched in (("A", names_a - names_b), ("B", names_b - names_a)):
        if unmatched:
            logging.warning("%d files in %s/%s/%s have no partner in the other folder and are "
                            "left out, e.g. %s", len(unmatched), path, side, split,
                            sorted(unmatched)[:5])
    items = [(n, {"A": os.path.join(folder_a, n), "B": os.path.join(folder_b, n)})
             for n in sorted(names_a & names_b)]
    return FileRecords(items, direction, f"{folder_a} matched with {folder_b}", max_pixels)


def image_folder(path: str, split: str,
                 max_pixels: int = images.DEFAULT_MAX_PIXELS) -> FileRecords:
    """Plain photos in `path/split/` for derived tasks: each becomes the target B."""
    folder = os.path.join(path, split)
    return FileRecords([(f, {"B": os.path.join(folder, f)}) for f in _image_files(folder)],
                       "AtoB", folder, max_pixels)


CITYSCAPES_SUFFIXES = {"L": "_gtFine_labelIds.png", "I": "_gtFine_instanceIds.png",
                       "B": "_leftImg8bit.png"}


def cityscapes_folder(path: str, split: str, instance_maps: bool,
                      max_pixels: int = images.DEFAULT_MAX_PIXELS) -> FileRecords:
    """The official Cityscapes layout: `gtFine/<split>/<city>/<frame>_gtFine_labelIds.png` (and
    `_instanceIds.png`) and `leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png`, matched by
    city and frame; a frame missing a part is reported and left out."""
    roots = {"L": os.path.join(path, "gtFine", split), "I": os.path.join(path, "gtFine", split),
             "B": os.path.join(path, "leftImg8bit", split)}
    keys = ("L", "I", "B") if instance_maps else ("L", "B")
    found: dict[str, dict[str, str]] = {}
    for root in dict.fromkeys(roots[key] for key in keys):  # gtFine is listed once for L and I.
        if not fileio.is_dir(root):
            raise DatasetError(f"{root} does not exist: dataset.source='cityscapes' reads "
                               "gtFine/ and leftImg8bit/ under dataset.path")
        for city in fileio.list_dirs(root):
            folder = os.path.join(root, city)
            for file in fileio.list_files(folder, (".png",)):
                for key in keys:
                    suffix = CITYSCAPES_SUFFIXES[key]
                    if roots[key] == root and file.endswith(suffix):
                        found.setdefault(file[:-len(suffix)], {})[key] = os.path.join(folder,
                                                                                      file)
    complete = {frame: parts for frame, parts in found.items() if len(parts) == len(keys)}
    if len(complete) < len(found):
        missing = sorted(set(found) - set(complete))
        logging.warning("%d Cityscapes frames of %s lack a part (%s) and are left out, e.g. %s",
                        len(missing), split, "/".join(keys), missing[:3])
    items = [(frame, {key: complete[frame][key] for key in keys}) for frame in sorted(complete)]
    return FileRecords(items, "AtoB", f"{path} (cityscapes {split})", max_pixels)


def pix2pixhd_folder(path: str, split: str, label_nc: int, instance_maps: bool,
                     max_pixels: int = images.DEFAULT_MAX_PIXELS) -> FileRecords:
    """pix2pixHD's own layout: `<split>_label/`, `<split>_img/` and `<split>_inst/` with label
    maps, or `<split>_A/` and `<split>_B/` with images (`label_nc=0`); files are matched by
    sorted order, as pix2pixHD does, so each folder must hold as many."""
    if label_nc:
        folders = {"L": f"{split}_label", "B": f"{split}_img"}
        if instance_maps:
            folders["I"] = f"{split}_inst"
    else:
        folders = {"A": f"{split}_A", "B": f"{split}_B"}
    files = {key: _image_files(os.path.join(path, folder)) for key, folder in folders.items()}
    counts = {folders[key]: len(names) for key, names in files.items()}
    if len(set(counts.values())) > 1:
        raise DatasetError(f"{path}: pix2pixHD's folders pair files by sorted order, so they must "
                           f"hold as many; they hold {counts}")
    items = [(files["B"][i], {key: os.path.join(path, folders[key], names[i])
                              for key, names in files.items()})
             for i in range(len(files["B"]))]
    return FileRecords(items, "AtoB", f"{path} (pix2pixhd {split})", max_pixels)


def serialize_record(name: str, record: Record) -> bytes:
    return serialization.msgpack_serialize({"name": name, **record})


def stage_shards(path: str, split: str, local: str) -> str:
    """Copies `path/<split>-*.array_record` to the local folder `local` once (atomically,
    file by file; a shard already there with the same size is kept) and returns `local`."""
    start, copied = time.perf_counter(), 0
    shards = fileio.glob(os.path.join(path, f"{split}-*.array_record"))
    for shard in shards:
        target = os.path.join(local, os.path.basename(shard))
        if fileio.is_file(target) and os.path.getsize(target) == fileio.size(shard):
            continue
        fileio.copy(shard, target)
        copied += 1
    logging.info("staged %d of %d %s shards from %s to %s in %.1f s", copied, len(shards),
                 split, path, local, time.perf_counter() - start)
    return local


class ArrayRecordPairs:
    """Shards `path/<split>-*.array_record` written by `p2p_jax.data.convert`."""

    def __init__(self, path: str, split: str, direction: str,
                 max_pixels: int = images.DEFAULT_MAX_PIXELS):
        self.where = os.path.join(path, f"{split}-*.array_record")
        files = fileio.glob(self.where)
        if not files:
            raise DatasetError(
                f"no ArrayRecord shards match {self.where}; create them with "
                f"python -m p2p_jax.data.convert --input=FOLDER --output={path}")
        self._source = grain.sources.ArrayRecordDataSource(files)
        self._direction, self._max_pixels = direction, max_pixels

    def __len__(self) -> int:
        return len(self._source)

    def _record(self, index: int) -> dict:
        try:
            record = serialization.msgpack_restore(self._source[index])
        except Exception as e:  # A damaged shard can fail in many ways; it is a bad record.
            raise images.BadImageError(f"{self.where}[{index}]: unreadable record "
                                       f"({type(e).__name__})") from None
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            raise images.BadImageError(f"{self.where}[{index}]: not a p2p_jax record")
        return record

    def name(self, index: int) -> str:
        return self._record(index)["name"]

    def path(self, index: int) -> str:
        return f"{self.where}[{index}] ({self.name(index)})"

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        record = self._record(index)
        return decode_record(record, f"{self.where}[{index}] ({record['name']})",
                             self._direction, self._max_pixels)

    def __repr__(self) -> str:
        return f"ArrayRecordPairs({len(self)} records in {self.where})"


class TfdsPairs:
    """A prepared TFDS dataset read with `tfds.data_source` (ArrayRecord, random access).

    B is feature `tfds_b_key`; A is `tfds_a_key`, rendered through a label palette when one is
    named (Cityscapes label ids -> the official colours: the pix2pix labels->photo task), or
    derived from B by `dataset.task` when empty.
    """

    def __init__(self, dataset: ml_collections.ConfigDict, split: str):
        import tensorflow_datasets as tfds  # Heavy; only for this source.

        builder = tfds.builder(dataset.tfds_name, data_dir=dataset.tfds_data_dir or None)
        if not builder.is_prepared():
            instructions = " ".join((builder.MANUAL_DOWNLOAD_INSTRUCTIONS or "").split())
            raise DatasetError(
                f"TFDS dataset {dataset.tfds_name} is not prepared in {builder.data_dir}; "
                + (f"{instructions} Put them in a folder DIR and run: " if instructions else
                   "run: ")
                + f"tfds build {dataset.tfds_name} --file_format=array_record"
                + (" --manual_dir=DIR" if instructions else "")
                + (f" --data_dir={dataset.tfds_data_dir}" if dataset.tfds_data_dir else ""))
        self._source = tfds.data_source(dataset.tfds_name, split=split,
                                        data_dir=dataset.tfds_data_dir or None, download=False)
        self._a_key, self._b_key = dataset.tfds_a_key, dataset.tfds_b_key
        self._palette = PALETTES[dataset.tfds_palette] if dataset.tfds_palette else None
        self._direction = dataset.direction
        self.where = f"tfds:{dataset.tfds_name}/{split}"

    def __len__(self) -> int:
        return len(self._source)

    def name(self, index: int) -> str:
        return f"{index:06d}"

    def path(self, index: int) -> str:
        return f"{self.where}[{index}]"

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        features = self._source[index]
        example = {"B": self._image(features[self._b_key], self._b_key, index)}
        if self._a_key:
            labels = features[self._a_key]
            if self._palette is not None:
                ids = labels[..., 0] if labels.ndim == 3 else labels
                labels = self._palette[np.minimum(ids, len(self._palette) - 1)]
            example["A"] = self._image(labels, self._a_key, index)
            if self._direction == "BtoA":
                example = {"A": example["B"], "B": example["A"]}
        return example

    def _image(self, array: np.ndarray, key: str, index: int) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[:, :, None]
        return images.standardize(array, f"{self.where}[{index}].{key}", bgr=False)


def make_source(dataset: ml_collections.ConfigDict, split: str, seed: int):
    """Builds the source for one split; a missing dataset fails here, before compilation.
    File sources list their folders here, once (the log says how long: a bucket listing is a
    round trip per folder), never again per epoch or step."""
    start = time.perf_counter()
    source = _make_source(dataset, split, seed)
    if dataset.source not in ("synthetic_scenes", "synthetic_cells", "tfds"):
        logging.info("dataset %s: %d examples, listed in %.2f s", getattr(source, "where", ""),
                     len(source), time.perf_counter() - start)
    return source


def _make_source(dataset: ml_collections.ConfigDict, split: str, seed: int):
    if dataset.source == "synthetic_scenes":
        num = dataset.num_train if split == "train" else dataset.num_eval
        return SyntheticScenes(num, dataset.load_size, seed, split)
    if dataset.source == "synthetic_cells":
        num = dataset.num_train if split == "train" else dataset.num_eval
        return SyntheticCells(num, dataset.load_size, seed, split)
    if dataset.source == "tfds":
        if not dataset.tfds_name:
            raise DatasetError("dataset.tfds_name is empty; e.g. "
                               "--config.dataset.tfds_name=cityscapes/semantic_segmentation")
        return TfdsPairs(dataset, split)
    if not dataset.path:
        raise DatasetError(f"dataset.path is empty; dataset.source={dataset.source!r} reads "
                           "files: pass --config.dataset.path=/path/to/dataset")
    limit = dataset.max_image_pixels
    if dataset.source == "aligned":
        return aligned_folder(dataset.path, split, dataset.direction, limit)
    if dataset.source == "paired":
        return paired_folder(dataset.path, split, dataset.direction, limit)
    if dataset.source == "images":
        return image_folder(dataset.path, split, limit)
    if dataset.source == "array_record":
        path = dataset.path
        if fileio.is_remote(path):
            if not dataset.stage_to_local:
                raise DatasetError(
                    f"dataset.path={path}: ArrayRecord shards are read from local files only; "
                    "set dataset.stage_to_local=DIR (a local folder) to copy them there once")
            path = stage_shards(path, split, dataset.stage_to_local)
        return ArrayRecordPairs(path, split, dataset.direction, limit)
    if dataset.source == "cityscapes":
        return cityscapes_folder(dataset.path, split, dataset.instance_maps, limit)
    if dataset.source == "pix2pixhd":
        return pix2pixhd_folder(dataset.path, split, dataset.label_nc, dataset.instance_maps,
                                limit)
    raise ValueError(f"dataset.source={dataset.source!r} is not one of {SOURCES}")
