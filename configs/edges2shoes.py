"""edges2shoes (edges -> photo): the reference trains 15 epochs at batch 4 on 256x256 files.

Data: the pix2pix `edges2shoes` folder (edges | photo side by side):
  --config.dataset.path=/data/edges2shoes
"""

from p2p_jax.config import defaults as default


def get_config(variant: str = ""):
    """Variants (default.apply_variant): `configs/edges2shoes.py:reference`, the 2017
    recipe exactly; `:podB`, a global batch of B; both: `:reference,podB`."""
    config = default.measured_recipe(default.reference_256(default.get_config()))
    config.dataset.direction = "AtoB"
    config.serve.palette = "edges"  # --mode=serve paints with these.
    config.dataset.load_size = 256
    config.dataset.preprocess = "none"
    config.batch_size = 4
    config.num_train_steps = 15 * 50025 // 4
    config.log_every_steps = 200
    config.sample_every_steps = 5000
    config.checkpoint_every_steps = 10000
    config.eval_every_steps = 10000
    return default.apply_variant(config, variant)
