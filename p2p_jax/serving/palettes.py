"""What the browser demo's canvas paints with, per task: named class colours (label -> photo),
a black pen on white (edges -> photo), or nothing (photo tasks take uploads), and how a
painted canvas becomes the generator's input (colours snapped to the nearest class, so
anti-aliased brush edges never make colours the model has not seen)."""

from __future__ import annotations

from typing import NamedTuple

import ml_collections
import numpy as np

from p2p_jax.data import camvid, cityscapes, synthetic


class Palette(NamedTuple):
    name: str
    classes: tuple[tuple[str, tuple[int, int, int]], ...]  # (class name, RGB), brush order.
    background: tuple[int, int, int]  # The empty canvas.
    label_ids: tuple[int, ...] = ()  # Class ids the colours stand for (label-map models).


SCENES = Palette("scenes", (
    ("sky", tuple(synthetic.PALETTE[synthetic.SKY])),
    ("building", tuple(synthetic.PALETTE[synthetic.BUILDING])),
    ("vegetation", tuple(synthetic.PALETTE[synthetic.VEGETATION])),
    ("road", tuple(synthetic.PALETTE[synthetic.ROAD])),
    ("terrain", tuple(synthetic.PALETTE[synthetic.TERRAIN]))),
    tuple(synthetic.PALETTE[synthetic.SKY]))

_SKY = tuple(int(c) for c in cityscapes.LABEL_COLOURS[cityscapes.SKY])
# The 19 evaluated classes in their official colours (pix2pix's cityscapes label images).
CITYSCAPES = Palette("cityscapes", tuple(
    (name, tuple(int(c) for c in colour))
    for name, colour in zip(cityscapes.TRAIN_NAMES, cityscapes.TRAIN_COLOURS, strict=True)),
    _SKY)
# The same classes as label ids (pix2pixHD's inputs: dataset.label_nc = 35).
CITYSCAPES_IDS = Palette("cityscapes_ids", CITYSCAPES.classes, _SKY, cityscapes.TRAIN_LABEL_IDS)
# CMP Facades' 12 classes as the pix2pix facades label images draw them (a jet colour map).
FACADES = Palette("facades", (
    ("background", (0, 0, 170)), ("wall", (0, 0, 255)), ("door", (0, 85, 255)),
    ("window", (0, 170, 255)), ("window sill", (0, 255, 255)), ("window head", (85, 255, 170)),
    ("shutter", (170, 255, 85)), ("balcony", (255, 255, 0)), ("trim", (255, 170, 0)),
    ("cornice", (255, 85, 0)), ("column", (255, 0, 0)), ("entrance", (170, 0, 0))),
    (0, 0, 170))
# CamVid's 11 classes in its own colours (p2p_jax.data.camvid's label images).
CAMVID = Palette("camvid", camvid.CLASSES, camvid.CLASSES[0][1])
EDGES = Palette("edges", (("pen", (0, 0, 0)),), (255, 255, 255))
NONE = Palette("none", (), (255, 255, 255))
PALETTES = {p.name: p for p in (SCENES, CITYSCAPES, CITYSCAPES_IDS, FACADES, CAMVID, EDGES, NONE)}


def for_config(config: ml_collections.ConfigDict) -> Palette:
    """`serve.palette`, or (auto) the task's: the embedded scenes, Cityscapes label ids for
    label-map models, an upload for derived photo tasks."""
    name = config.serve.palette
    if name != "auto":
        return PALETTES[name]
    dataset = config.dataset
    if dataset.label_nc:
        return CITYSCAPES_IDS
    if dataset.source == "synthetic_scenes":
        return SCENES
    return NONE


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def canvas_to_input(canvas: np.ndarray, palette: Palette) -> np.ndarray:
    """A painted canvas (H, W, 3 or 4) as the model reads it: each pixel snapped to the
    nearest class colour (uint8 RGB), the class id of it for label-map palettes (H, W, 1),
    or black / white for the pen."""
    rgb = canvas[..., :3].astype(np.float32)
    if canvas.shape[-1] == 4:  # Transparent (unpainted) pixels are the background.
        alpha = canvas[..., 3:].astype(np.float32) / 255
        rgb = rgb * alpha + np.asarray(palette.background, np.float32) * (1 - alpha)
    choices = [c for _, c in palette.classes]
    if palette.background not in choices:  # The pen's white paper.
        choices.append(palette.background)
    colours = np.asarray(choices, np.float32)
    best = np.full(rgb.shape[:2], np.inf, np.float32)  # One colour at a time: bounded memory.
    nearest = np.zeros(rgb.shape[:2], np.int64)
    for index, colour in enumerate(colours):
        distance = ((rgb - colour) ** 2).sum(-1)
        closer = distance < best
        best[closer], nearest[closer] = distance[closer], index
    if palette.label_ids:  # The background is one of the classes (sky) here.
        return np.asarray(palette.label_ids, np.uint8)[nearest][:, :, None]
    return colours.astype(np.uint8)[nearest]
