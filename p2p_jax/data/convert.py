"""Packs an image-folder dataset into ArrayRecord shards the trainer reads directly.

  python -m p2p_jax.data.convert --input=/data/facades --output=/data/facades_ar
  python -m p2p_jax.data.convert --input=/data/pairs --layout=paired --output=/data/pairs_ar

Each split folder found (train/, val/, test/) becomes `OUTPUT/<split>-NNNNN-of-MMMMM.array_record`
holding the original encoded files (no re-encoding, so nothing is lost) and the file names.
Train with `--config.dataset.source=array_record --config.dataset.path=OUTPUT`. Unreadable
files are reported and left out; shards are written under a temporary name and renamed when
complete.
"""

from __future__ import annotations

import os
import tempfile

from absl import app, flags, logging
from array_record.python import array_record_module
from etils import epath

from p2p_jax import fileio
from p2p_jax.data import images, sources

LAYOUTS = {
    "aligned": lambda path, split: sources.aligned_folder(path, split, "AtoB"),
    "paired": lambda path, split: sources.paired_folder(path, split, "AtoB"),
    "images": sources.image_folder,
    # Label maps keep their instance maps when present (train with
    # --config.dataset.instance_maps=True).
    "cityscapes": lambda path, split: sources.cityscapes_folder(path, split, _INSTANCES.value),
    "pix2pixhd": lambda path, split: sources.pix2pixhd_folder(path, split, _LABELS.value,
                                                              _INSTANCES.value),
}
SPLITS = ("train", "val", "test")

_INPUT = flags.DEFINE_string("input", None, "Dataset folder with train/ (val/, test/) inside.")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory, local or gs://.")
_LAYOUT = flags.DEFINE_enum("layout", "aligned", list(LAYOUTS),
                            "aligned: A|B files; paired: A/<split> and B/<split>; images: photos; "
                            "cityscapes: gtFine/ + leftImg8bit/; pix2pixhd: <split>_label/, "
                            "_inst/, _img/ (or _A/, _B/ with --label_maps=False).")
_INSTANCES = flags.DEFINE_bool("instance_maps", True, "cityscapes, pix2pixhd: keep the "
                               "instance maps.")
_LABELS = flags.DEFINE_bool("label_maps", True, "pix2pixhd: <split>_label/ (True) or _A/.")
_SHARD_SIZE = flags.DEFINE_integer("examples_per_shard", 1000, "Records per shard.")


def _split_exists(path: str, layout: str, split: str) -> bool:
    if layout == "pix2pixhd":  # The flag is read only for its layout (callers in Python).
        return fileio.is_dir(os.path.join(path, f"{split}_img" if _LABELS.value
                                          else f"{split}_B"))
    folder = {"paired": os.path.join(path, "A", split),
              "cityscapes": os.path.join(path, "gtFine", split),
              }.get(layout, os.path.join(path, split))
    return fileio.is_dir(folder)


def convert_split(records: sources.FileRecords, output: str, split: str,
                  examples_per_shard: int) -> tuple[int, int]:
    """Writes one split's shards; returns (records written, files left out)."""
    good = []
    for index in range(len(records)):
        try:
            record = records.record(index)
            sources.decode_record(record, records.path(index), "AtoB")  # Check it decodes.
        except images.BadImageError as e:
            logging.warning("left out: %s", e)
            continue
        good.append(sources.serialize_record(records.name(index), record))
    num_shards = max(-(-len(good) // examples_per_shard), 1)
    for shard in range(num_shards):
        final = epath.Path(output) / f"{split}-{shard:05d}-of-{num_shards:05d}.array_record"
        remote = fileio.is_remote(output)  # ArrayRecord writes local files only.
        tmp = (epath.Path(tempfile.mkdtemp(prefix="p2p_jax_shard_")) / final.name if remote
               else final.with_name(final.name + ".tmp"))
        writer = array_record_module.ArrayRecordWriter(os.fspath(tmp), "group_size:1")
        for serialized in good[shard::num_shards]:
            writer.write(serialized)
        writer.close()
        if remote:  # Then into the bucket, atomically.
            fileio.copy(tmp, final)
            tmp.unlink()
        else:
            tmp.replace(final)
    return len(good), len(records) - len(good)


def convert(input_path: str, output: str, layout: str, examples_per_shard: int) -> dict:
    """Converts every split present; returns {split: records written}."""
    splits = [s for s in SPLITS if _split_exists(input_path, layout, s)]
    if not splits:
        raise sources.DatasetError(f"no {'/'.join(SPLITS)} folders in {input_path} for layout "
                                f"{layout!r}; see the --layout help")
    epath.Path(output).mkdir(parents=True, exist_ok=True)
    written = {}
    for split in splits:
        count, left_out = convert_split(LAYOUTS[layout](input_path, split), output, split,
                                        examples_per_shard)
        logging.info("%s: %d records, %d unreadable files left out", split, count, left_out)
        written[split] = count
    return written


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    print(convert(_INPUT.value, _OUTPUT.value, _LAYOUT.value, _SHARD_SIZE.value))


if __name__ == "__main__":
    flags.mark_flags_as_required(["input", "output"])
    app.run(main)
