"""Facades (labels -> photo), the reference's settings: 256x256 unet_256, batch 1, 200 epochs.

Data: the pix2pix `facades` folder (train/val/test, A|B side by side):
  --config.dataset.path=/data/facades
"""

from p2p_jax.config import defaults as default


def get_config(variant: str = ""):
    """Variants (default.apply_variant): `configs/facades.py:reference`, the 2017
    recipe exactly; `:podB`, a global batch of B; both: `:reference,podB`."""
    config = default.measured_recipe(default.reference_256(default.get_config()))
    config.dataset.direction = "BtoA"  # The facades files hold photo | labels.
    config.serve.palette = "facades"  # --mode=serve paints with these.
    config.num_train_steps = 200 * 400  # 200 epochs of 400 images at batch 1.
    config.log_every_steps = 100
    config.sample_every_steps = 2000
    config.checkpoint_every_steps = 5000
    config.eval_every_steps = 5000
    return default.apply_variant(config, variant)
