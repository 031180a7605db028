"""The Cityscapes tables (cityscapesScripts' labels.py), written once: colours by label id,
the 19 evaluated (train) classes with their names and label ids, and label id -> train id.

Used by the data sources (label maps drawn in colour), the FCN-score (train ids), the embedded
scenes (their colours), the sample grids and the browser demo's palettes."""

import numpy as np

# Official colours by label id 0..33; ids 0-4 are black.
LABEL_COLOURS = np.array(
    [[0, 0, 0]] * 5 + [
        [111, 74, 0], [81, 0, 81], [128, 64, 128], [244, 35, 232], [250, 170, 160],
        [230, 150, 140], [70, 70, 70], [102, 102, 156], [190, 153, 153], [180, 165, 180],
        [150, 100, 100], [150, 120, 90], [153, 153, 153], [153, 153, 153], [250, 170, 30],
        [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
        [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 0, 90], [0, 0, 110],
        [0, 80, 100], [0, 0, 230], [119, 11, 32]], np.uint8)
MAX_LABEL_ID = len(LABEL_COLOURS) - 1  # 33, "license plate" is -1 and never in the maps.

# The 19 classes the benchmark evaluates, in train-id order.
TRAIN_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle")
TRAIN_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
TRAIN_COLOURS = LABEL_COLOURS[list(TRAIN_LABEL_IDS)].astype(np.int32)
NUM_TRAIN_CLASSES = len(TRAIN_LABEL_IDS)
IGNORE = 255  # The train id of every label id outside the 19.
LABEL_ID_TO_TRAIN_ID = np.full(256, IGNORE, np.uint8)
LABEL_ID_TO_TRAIN_ID[list(TRAIN_LABEL_IDS)] = np.arange(NUM_TRAIN_CLASSES)

ROAD, BUILDING, VEGETATION, TERRAIN, SKY = 7, 11, 21, 22, 23  # Label ids of common classes.
