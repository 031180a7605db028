"""Style transfer photo -> painting-like rendering (OpenCV `stylization`) at 256x256, unet_256.

The paired target is rendered on the fly from any folder of photos (train/ and val/
subfolders): --config.dataset.path=/data/photos; other renderings with
--config.dataset.derived.style=pencil_sketch (or pencil_color, detail_enhance).
"""

from p2p_jax.config import defaults as default


def get_config(variant: str = ""):
    """Variants (default.apply_variant): `configs/style_transfer.py:reference`, the 2017
    recipe exactly; `:podB`, a global batch of B; both: `:reference,podB`."""
    config = default.photo_task("stylize")
    config.dataset.direction = "BtoA"  # The derived rendering is the target.
    config.dataset.worker_count = 2  # The rendering costs ~tens of ms per image.
    return default.apply_variant(config, variant)
