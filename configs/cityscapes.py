"""Cityscapes labels -> photo, the reference's settings: 256x256 unet_256, batch 1, 200 epochs.

Data: the pix2pix `cityscapes` folder (photo | labels side by side, train/ and val/):
  --config.dataset.path=/data/cityscapes
"""

from p2p_jax.config import defaults as default


def get_config(variant: str = ""):
    """Variants (default.apply_variant): `configs/cityscapes.py:reference`, the 2017
    recipe exactly; `:podB`, a global batch of B; both: `:reference,podB`."""
    config = default.measured_recipe(default.reference_256(default.get_config()))
    config.dataset.direction = "BtoA"
    config.serve.palette = "cityscapes"  # --mode=serve paints with these.
    config.num_train_steps = 200 * 2975
    config.log_every_steps = 500
    config.sample_every_steps = 10000
    config.checkpoint_every_steps = 20000
    config.eval_every_steps = 20000
    return default.apply_variant(config, variant)
