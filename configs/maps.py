"""Maps (aerial photo -> map), the reference's settings: 256 crops of 286-resized 600x600.

Data: the pix2pix `maps` folder (photo | map side by side): --config.dataset.path=/data/maps
"""

from p2p_jax.config import defaults as default


def get_config(variant: str = ""):
    """Variants (default.apply_variant): `configs/maps.py:reference`, the 2017
    recipe exactly; `:podB`, a global batch of B; both: `:reference,podB`."""
    config = default.measured_recipe(default.reference_256(default.get_config()))
    config.dataset.direction = "AtoB"
    config.num_train_steps = 200 * 1096
    config.log_every_steps = 200
    config.sample_every_steps = 5000
    config.checkpoint_every_steps = 10000
    config.eval_every_steps = 10000
    return default.apply_variant(config, variant)
