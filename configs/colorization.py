"""Colorization (grayscale -> colour) at 256x256 with unet_256.

Until the data issue wires derived tasks, this trains on any aligned folder whose A half is the
grayscale image: --config.dataset.path=/data/colorization
"""

from configs import default


def get_config(variant: str = ""):
    """`configs/colorization.py:podB` scales it to a global batch of B (apply_variant)."""
    config = default.reference_256(default.get_config())
    config.num_train_steps = 100000
    config.log_every_steps = 200
    config.sample_every_steps = 5000
    config.checkpoint_every_steps = 10000
    config.eval_every_steps = 10000
    return default.apply_variant(config, variant)
