"""Colorization (grayscale -> colour) at 256x256 with unet_256.

Until the data issue wires derived tasks, this trains on any aligned folder whose A half is the
grayscale image: --config.dataset.path=/data/colorization
"""

from configs import default


def get_config(variant: str = ""):
    """`configs/NAME.py:podB` scales it to a global batch of B (see default.apply_variant)."""
    config = default.get_config()
    config.dataset.source = "aligned"
    config.dataset.image_size = 256
    config.dataset.load_size = 286
    config.model.generator = "unet_256"
    config.model.ngf = 64
    config.model.ndf = 64
    config.batch_size = 1
    config.num_train_steps = 100000
    config.log_every_steps = 200
    config.sample_every_steps = 5000
    config.checkpoint_every_steps = 10000
    config.eval_every_steps = 10000
    return default.apply_variant(config, variant)
