"""Colorization (grayscale -> colour) at 256x256 with unet_256, from any folder of photos.

Inputs are derived on the fly (ITU-R 601 gray, or Lab lightness with
--config.dataset.derived.color_space=lab --config.model.chroma=lab); photos in train/ and
val/ subfolders:
  --config.dataset.path=/data/photos

The generator predicts chroma only (`model.chroma`): its output keeps the input's lightness
exactly, and where it cannot tell a colour it leaves gray rather than painting a cast.
"""

from p2p_jax.config import defaults as default


def get_config(variant: str = ""):
    """Variants (default.apply_variant): `configs/colorization.py:reference`, the 2017
    recipe exactly (RGB output); `:podB`, a global batch of B; both: `:reference,podB`."""
    config = default.photo_task("colorization")
    config.model.chroma = "ycbcr"  # Pairs with the default gray input.
    return default.apply_variant(config, variant)
