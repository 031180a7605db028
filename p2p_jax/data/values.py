"""What the numbers in the pixels mean: each side's dtype and how its values map to the
networks' [-1, 1] and back, per channel.

Photos are uint8 0..255 -> [-1, 1], as the reference. Scientific images keep their own terms:
a 16-bit or float image is read without loss, mapped by its dtype's range or by percentiles
of the training split (`dataset.normalize`, resolved once and saved in config.json), and an
output is mapped back and written in its target's dtype, so a target's round trip through
the mapping is exact to its precision.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from p2p_jax.config.choices import DATA_DTYPES, DTYPE_RANGES


@dataclasses.dataclass(frozen=True)
class ValueMap:
    """One side's dtype and the values that map to -1 and +1 (per channel, or one for all)."""

    dtype: str
    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def of_dtype(cls, dtype: str) -> ValueMap:
        low, high = DTYPE_RANGES[dtype]
        return cls(dtype, (low,), (high,))

    @property
    def integer(self) -> bool:
        return self.dtype != "float32"

    def scale(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, (high - low) / 2) as float32 vectors over the channel axis."""
        low = np.asarray(self.low, np.float32)
        return low, (np.asarray(self.high, np.float32) - low) / 2

    def to_unit(self, image: np.ndarray) -> np.ndarray:
        """Host-side: values -> float32 where low..high is 0..1 (previews, baselines)."""
        low, half = self.scale()
        return (image.astype(np.float32) - low) / (2 * half)


UINT8 = ValueMap.of_dtype("uint8")


def side_map(dataset: ml_collections.ConfigDict, side: str) -> ValueMap:
    """The resolved map of side "input" or "output" of a config (see `pipeline.resolve_data`);
    label maps (class ids) and unresolved configs read as uint8 photos."""
    norm = dataset.normalize
    dtype = dataset[f"{side}_dtype"] or "uint8"
    low, high = norm[f"{side}_low"], norm[f"{side}_high"]
    if not low or (side == "input" and dataset.label_nc):
        return ValueMap.of_dtype(dtype)
    return ValueMap(dtype, tuple(float(v) for v in low), tuple(float(v) for v in high))


def widest(dtypes: list[str]) -> str:
    """The dtype that holds every one of `dtypes` without loss."""
    return max(dtypes, key=DATA_DTYPES.index)


def percentile_range(images: list[np.ndarray], percentiles: tuple[float, float],
                     max_values: int = 1 << 16) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (low, high) percentiles over `images` (each subsampled on a regular grid to
    at most `max_values` pixels, so a large split costs bounded memory); a channel whose two
    percentiles meet gets high = low + 1 (a constant channel maps to -1, not a division by 0)."""
    samples = []
    for image in images:
        flat = image.reshape(-1, image.shape[-1])
        samples.append(flat[::max(1, flat.shape[0] // max_values)].astype(np.float64))
    values = np.concatenate(samples)
    low, high = np.percentile(values, percentiles, axis=0)
    high = np.where(high > low, high, low + 1)
    return tuple(float(v) for v in low), tuple(float(v) for v in high)


def preview_channels(channels: int, chosen: tuple[int, ...] = ()) -> tuple[int, ...]:
    """The channels shown as RGB: `chosen` (eval.preview_channels) where the image has them,
    else by count: gray; a two-channel fluorescence composite (channel 0 green, 1 magenta);
    RGB; the first three of more."""
    if chosen and max(chosen) < channels:
        return tuple(chosen)
    return {1: (0,), 2: (1, 0, 1), 3: (0, 1, 2)}.get(channels, (0, 1, 2))


def preview(image: np.ndarray, values: ValueMap, chosen: tuple[int, ...] = ()) -> np.ndarray:
    """An image of any dtype and channel count as uint8 gray or RGB for people (sheets,
    samples, serve): low..high to 0..255 (clipped), channels by `preview_channels`. An 8-bit
    gray or RGB photo is returned as it is."""
    channels = image.shape[-1]
    picked = preview_channels(channels, chosen)
    if values == UINT8 and channels in (1, 3) and picked in ((0,), (0, 1, 2)):
        return image
    unit = values.to_unit(image)
    shown = unit[..., list(picked)]
    return np.clip(np.round(shown * 255), 0, 255).astype(np.uint8)
