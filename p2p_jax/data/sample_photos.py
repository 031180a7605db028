"""A small photo dataset from the photographs scikit-image ships (nothing to download).

  python -m p2p_jax.data.sample_photos --output=/tmp/photos

Writes `train/` and `val/` tiles of seven colour photographs for the derived tasks
(colorization, super-resolution, style transfer, ...): the validation tiles come from a strip
at the right of each photograph that no training tile overlaps. Enough to show what a short
run learns, on any machine.
"""

from __future__ import annotations

import os

import numpy as np
import skimage.data
from absl import app, flags

from p2p_jax.data import images

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
          "hubble_deep_field", "retina")

_OUTPUT = flags.DEFINE_string("output", None, "Folder to create train/ and val/ in.")
_TILE = flags.DEFINE_integer("tile", 96, "Tile side in pixels.")
_SHORT_SIDE = flags.DEFINE_integer("short_side", 256, "Photos are resized to this short side.")


def tiles(photo: np.ndarray, tile: int, stride: int) -> list[np.ndarray]:
    return [photo[y:y + tile, x:x + tile]
            for y in range(0, photo.shape[0] - tile + 1, stride)
            for x in range(0, photo.shape[1] - tile + 1, stride)]


def write_photo_folder(output: str, tile: int = 96, short_side: int = 256) -> dict[str, int]:
    """Returns the number of tiles written per split."""
    counts = {"train": 0, "val": 0}
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        h, w = photo.shape[:2]
        scale = short_side / min(h, w)
        photo = images.resize(photo, round(h * scale), round(w * scale))
        regions = {"train": (photo[:, :-tile], tile // 3), "val": (photo[:, -tile:], tile)}
        for split, (region, stride) in regions.items():
            for i, piece in enumerate(tiles(region, tile, stride)):
                images.write(os.path.join(output, split, f"{name}_{i:03d}.png"), piece)
                counts[split] += 1
    return counts


def main(argv: list[str]) -> None:
    del argv
    print(write_photo_folder(_OUTPUT.value, _TILE.value, _SHORT_SIDE.value))


if __name__ == "__main__":
    flags.mark_flags_as_required(["output"])
    app.run(main)
