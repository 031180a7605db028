"""4x super-resolution (bicubic-downsampled, upsampled back -> original) at 256x256, unet_256.

Low-resolution inputs are derived on the fly from any folder of photos (train/ and val/
subfolders): --config.dataset.path=/data/photos; change the factor or kernel with
--config.dataset.derived.sr_factor=2 --config.dataset.derived.sr_kernel=gaussian
"""

from configs import default


def get_config(variant: str = ""):
    """`configs/super_resolution.py:podB` scales it to a global batch of B (apply_variant)."""
    config = default.reference_256(default.get_config())
    config.dataset.source = "images"
    config.dataset.task = "super_resolution"
    config.dataset.load_size = 256
    config.dataset.preprocess = "crop"  # Resizing would blur the high-resolution target.
    config.batch_size = 4
    config.num_train_steps = 100000
    config.log_every_steps = 200
    config.sample_every_steps = 5000
    config.checkpoint_every_steps = 10000
    config.eval_every_steps = 10000
    return default.apply_variant(config, variant)
