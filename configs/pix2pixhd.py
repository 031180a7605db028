"""A pix2pixHD-layout folder of your own (NVIDIA/pix2pixHD's datasets/<name>/): label maps,
instance maps and photos in `train_label/`, `train_inst/`, `train_img/` (and `test_*`), files
paired by sorted order, with pix2pixHD's default options (the global generator at 1024x512):

  python -m p2p_jax.main --config=configs/pix2pixhd.py --config.dataset.path=/data/my_dataset \\
    --config.dataset.label_nc=NUM_CLASSES --config.loss.vgg_weights=/path/vgg19-dcbb9e9d.pth

Image inputs instead of labels (`train_A/`, `train_B/`): --config.dataset.label_nc=0
--config.dataset.instance_maps=False (pix2pixHD's --label_nc 0 --no_instance). Without
instance maps: --config.dataset.instance_maps=False. Set num_train_steps to 200 epochs of your
data (pix2pixHD's --niter 100 --niter_decay 100 at batch 1). Variants as cityscapes_hd.py:
`:local` (2048x1024 enhancer stage, from this run's workdir), `:podB`.
"""

from p2p_jax.config import shipped

cityscapes_hd = shipped.sibling(__file__, "cityscapes_hd")


def get_config(variant: str = ""):
    config = cityscapes_hd.get_config(variant)
    config.dataset.source = "pix2pixhd"
    config.eval.split = "test"  # pix2pixHD's phases are train and test.
    if "local" in variant.split(","):
        config.model.init_from = "workdirs/pix2pixhd"
    return config
