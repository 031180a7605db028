"""A seconds-long config for tests and smoke runs: 32x32, a 5-level U-Net 8 channels wide."""

from p2p_jax.config import defaults as default


def get_config():
    config = default.get_config()
    config.batch_size = 4
    config.num_train_steps = 6
    config.log_every_steps = 2
    config.sample_every_steps = 3
    config.num_sample_images = 2
    config.checkpoint_every_steps = 3
    config.eval_every_steps = 3
    config.dataset.num_train = 16
    config.dataset.num_eval = 4
    config.dataset.image_size = 32
    config.dataset.load_size = 36
    config.model.num_downs = 5
    config.model.ngf = 8
    config.model.ndf = 8
    config.eval.num_examples = 4
    config.eval.batch_size = 4
    return config
