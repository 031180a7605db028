"""Cityscapes labels -> photo from the official release through TFDS (not the pix2pix folder).

Prepare once (the zips need a cityscapes-dataset.com login; nothing downloads here):
  tfds build cityscapes/semantic_segmentation --file_format=array_record --manual_dir=DIR
with leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip in DIR. Label ids are drawn in
the official Cityscapes colours, as the pix2pix dataset shows them, and resized with the photos
to 286 (then random 256 crops), like the reference's prepared 256x256 images.
"""

from p2p_jax.config import shipped

cityscapes = shipped.sibling(__file__, "cityscapes")


def get_config(variant: str = ""):
    """Same settings as configs/cityscapes.py; `:podB` scales to a global batch of B."""
    config = cityscapes.get_config(variant)
    config.dataset.source = "tfds"
    config.dataset.tfds_name = "cityscapes/semantic_segmentation"
    config.dataset.tfds_a_key = "segmentation_label"
    config.dataset.tfds_b_key = "image_left"
    config.dataset.tfds_palette = "cityscapes"
    config.dataset.direction = "AtoB"
    config.eval.split = "validation"
    return config
