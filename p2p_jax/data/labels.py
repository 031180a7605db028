"""Label and instance maps (pix2pixHD's inputs) on the host: instance boundaries.

The class ids travel to the device as uint8 and are one-hot encoded there (35 float channels
of a 2048x1024 map would be 290 MB per image to copy); the boundary map is one uint8 channel.
"""

from __future__ import annotations

import numpy as np


def instance_boundaries(instances: np.ndarray) -> np.ndarray:
    """(H, W) instance ids -> (H, W, 1) uint8, 1 where a pixel's id differs from any of its
    4-neighbours' (both pixels of each differing pair), as pix2pixHD's get_edges."""
    edge = np.zeros(instances.shape, bool)
    across = instances[:, 1:] != instances[:, :-1]
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    down = instances[1:, :] != instances[:-1, :]
    edge[1:, :] |= down
    edge[:-1, :] |= down
    return edge.astype(np.uint8)[:, :, None]
