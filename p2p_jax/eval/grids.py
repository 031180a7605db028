"""Image grids of (input | generated | target) for TensorBoard and for PNG files."""

from __future__ import annotations

import cv2
import ml_collections
import numpy as np

from p2p_jax.data import values
from p2p_jax.data.cityscapes import LABEL_COLOURS


def label_colours(ids: np.ndarray) -> np.ndarray:
    """Class ids (H, W, 1) drawn for people: Cityscapes' official colours for its 35 label
    ids, a fixed colour per class beyond them."""
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(LABEL_COLOURS)] = LABEL_COLOURS
    extra = np.random.default_rng(0).integers(40, 256, (256 - len(LABEL_COLOURS), 3))
    palette[len(LABEL_COLOURS):] = extra
    return palette[ids[..., 0]]


def previews(examples: list[dict[str, np.ndarray]], outputs: list[np.ndarray],
             dataset: ml_collections.ConfigDict, chosen: tuple[int, ...] = ()
             ) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """Examples and outputs as people see them (uint8 gray or RGB): a label map in colours,
    images of any pixel type and channel count by `values.preview` (`chosen`: the
    eval.preview_channels); 8-bit photos as they are."""
    input_map = values.side_map(dataset, "input")
    output_map = values.side_map(dataset, "output")
    shown = []
    for example in examples:
        view = dict(example)
        view["A"] = (label_colours(example["A"]) if dataset.label_nc
                     else values.preview(example["A"], input_map, chosen))
        if "B" in example:
            view["B"] = values.preview(example["B"], output_map, chosen)
        shown.append(view)
    return shown, [values.preview(output, output_map, chosen) for output in outputs]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Grayscale is shown as RGB so that rows of mixed channel counts line up."""
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def _pad_width(row: np.ndarray, width: int) -> np.ndarray:
    return np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255)


def side_by_side(parts, gap: int = 2) -> np.ndarray:
    """Images of one height in a row, white gaps between, as uint8 RGB."""
    sep = np.full((parts[0].shape[0], gap, 3), 255, np.uint8)
    row = [as_rgb(parts[0])]
    for part in parts[1:]:
        row += [sep, as_rgb(part)]
    return np.concatenate(row, axis=1)


def column_labels(widths: list[int], names: list[str], gap: int = 2, indent: int = 0,
                  height: int = 22) -> np.ndarray:
    """A white band naming the images of a `side_by_side` row (their `widths`, `gap` apart,
    starting `indent` pixels in), each name at its image's left edge."""
    band = np.full((height, indent + sum(widths) + gap * (len(widths) - 1), 3), 255, np.uint8)
    left = indent
    for width, name in zip(widths, names, strict=True):
        cv2.putText(band, name, (left + 2, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
        left += width + gap
    return band


def triptych_grid(inputs, outputs, targets, gap: int = 2) -> np.ndarray:
    """One row per example: input | output | target, uint8 RGB. Images may differ in size
    between rows (rows are padded white to the widest)."""
    rows = [side_by_side(parts, gap) for parts in zip(inputs, outputs, targets, strict=True)]
    width = max(r.shape[1] for r in rows)
    out = []
    for row in rows:
        out += [np.full((gap, width, 3), 255, np.uint8)] if out else []
        out.append(_pad_width(row, width))
    return np.concatenate(out, axis=0)
