"""4x super-resolution (bicubic-downsampled, upsampled back -> original) at 256x256, unet_256.

Low-resolution inputs are derived on the fly from any folder of photos (train/ and val/
subfolders): --config.dataset.path=/data/photos; change the factor or kernel with
--config.dataset.derived.sr_factor=2 --config.dataset.derived.sr_kernel=gaussian
"""

from p2p_jax.config import defaults as default


def get_config(variant: str = ""):
    """Variants (default.apply_variant): `configs/super_resolution.py:reference`, the 2017
    recipe exactly; `:podB`, a global batch of B; both: `:reference,podB`."""
    config = default.photo_task("super_resolution")
    config.dataset.load_size = 256
    config.dataset.preprocess = "crop"  # Resizing would blur the high-resolution target.
    config.batch_size = 4
    return default.apply_variant(config, variant)
