"""Random-access sources of {'A', 'B'} uint8 image pairs, chosen by `dataset.source`."""

from __future__ import annotations

import os

import ml_collections
import numpy as np
from PIL import Image

from p2p_jax.data.synthetic import SyntheticScenes

SOURCES = ("synthetic_scenes", "aligned")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class AlignedFolder:
    """The pix2pix "aligned" format: each image holds A | B side by side, in `path/split/`."""

    def __init__(self, path: str, split: str, direction: str):
        folder = os.path.join(path, split)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"dataset folder {folder} does not exist; set dataset.path to "
                                    f"a folder with {split}/ inside (the pix2pix aligned layout)")
        self._files = sorted(
            os.path.join(folder, f) for f in os.listdir(folder)
            if f.lower().endswith(IMAGE_EXTENSIONS))
        if not self._files:
            raise FileNotFoundError(f"no images in {folder}; expected A|B side-by-side files")
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"dataset.direction={direction!r} must be 'AtoB' or 'BtoA'")
        self._swap = direction == "BtoA"

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        with Image.open(self._files[index]) as image:
            ab = np.asarray(image.convert("RGB"))
        half = ab.shape[1] // 2
        a, b = ab[:, :half], ab[:, half:2 * half]
        return {"A": b, "B": a} if self._swap else {"A": a, "B": b}

    def __repr__(self) -> str:
        return f"AlignedFolder({len(self._files)} files)"


def make_source(dataset: ml_collections.ConfigDict, split: str, seed: int):
    """Builds the source for one split; a missing dataset fails here, before compilation."""
    if dataset.source == "synthetic_scenes":
        num = dataset.num_train if split == "train" else dataset.num_eval
        return SyntheticScenes(num, dataset.load_size, seed, split)
    if dataset.source == "aligned":
        if not dataset.path:
            raise ValueError("dataset.path is empty; pass --config.dataset.path=/path/to/dataset")
        return AlignedFolder(dataset.path, split, dataset.direction)
    raise ValueError(f"dataset.source={dataset.source!r} is not one of {SOURCES}")
