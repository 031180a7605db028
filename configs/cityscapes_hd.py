"""Cityscapes label ids -> photo at high resolution, pix2pixHD's recipe (NVIDIA/pix2pixHD
scripts/train_512p.sh, then train_1024p_24G.sh), in two stages:

  1. `global` generator at 1024x512 (pix2pixHD's label2city_512p), 2-scale discriminator:
       python -m p2p_jax.main --config=configs/cityscapes_hd.py \\
         --config.dataset.path=/data/cityscapes --config.loss.vgg_weights=/path/vgg19-dcbb9e9d.pth
  2. `local` enhancer at 2048x1024 (label2city_1024p), initialised from stage 1's workdir:
       python -m p2p_jax.main --config=configs/cityscapes_hd.py:local \\
         --config.dataset.path=/data/cityscapes --config.loss.vgg_weights=/path/vgg19-dcbb9e9d.pth

Data: the official release unzipped (gtFine/ and leftImg8bit/ under dataset.path): label ids
(35 classes, one-hot) plus instance boundaries in, photos out. Every setting follows
pix2pixHD's options and scripts; epochs are counted in steps of its batch of 1 over the 2975
training images. Variants, comma-separated: `local` (stage 2), `podB` (a global batch of B:
square-root learning-rate scaling, bf16, fewer steps), e.g. `:local,pod32`.
"""

from p2p_jax.config import defaults as default

TRAIN_IMAGES = 2975


def get_config(variant: str = ""):
    config = default.get_config()
    dataset, model, loss, opt = config.dataset, config.model, config.loss, config.optimizer
    dataset.source = "cityscapes"  # gtFine/<split>/<city>/ + leftImg8bit/<split>/<city>/
    dataset.label_nc = 35  # Cityscapes label ids (--label_nc 35).
    dataset.instance_maps = True  # Instance boundaries as one more input channel.
    dataset.preprocess = "scale_width"  # --resize_or_crop scale_width, --loadSize 1024
    dataset.load_size = 1024
    dataset.image_size = (512, 1024)  # 2048x1024 scaled to width 1024.
    dataset.flip = True
    model.generator = "global"  # --netG global --ngf 64 --n_downsample_global 4
    model.ngf = 64
    model.n_downsample_global = 4
    model.n_blocks_global = 9
    model.norm = "instance"  # --norm instance (affine-free)
    model.dropout = 0.0
    model.discriminator = "multiscale"  # --num_D 2 --n_layers_D 3 --ndf 64
    model.num_d = 2
    model.n_layers_d = 3
    model.ndf = 64
    loss.gan_mode = "lsgan"  # pix2pixHD's default (no --no_lsgan)
    config.monitor.g_gan_ceiling = 0.9  # lsgan's G loss is 1 when D calls every fake fake.
    loss.lambda_l1 = 0.0  # pix2pixHD has no L1 term.
    loss.lambda_feat = 10.0  # --lambda_feat 10, GAN feature matching ...
    loss.lambda_vgg = 10.0  # ... and the VGG loss, weighted by the same lambda_feat.
    opt.update_order = "joint"  # Both losses from one D pass, both nets updated.
    opt.learning_rate = 2e-4  # --lr 0.0002 --beta1 0.5
    opt.b1 = 0.5
    config.batch_size = 1  # --batchSize 1
    config.num_train_steps = 200 * TRAIN_IMAGES  # --niter 100 --niter_decay 100 (epochs)
    opt.constant_steps = 100 * TRAIN_IMAGES
    opt.decay_steps = 100 * TRAIN_IMAGES
    config.log_every_steps = 100
    config.sample_every_steps = 5000
    config.checkpoint_every_steps = 10000
    config.eval_every_steps = 20000
    config.num_sample_images = 4
    config.eval.num_examples = 16
    config.eval.batch_size = 1
    config.eval.tile_pixels = 2048 * 1024  # Whole Cityscapes frames, never tiles.
    parts = [part for part in variant.split(",") if part]
    if "local" in parts:
        parts.remove("local")
        local_stage(config)
    return default.apply_variant(config, ",".join(parts))


def local_stage(config) -> None:
    """pix2pixHD's scripts/train_1024p_24G.sh: --netG local --ngf 32 --num_D 3
    --load_pretrain checkpoints/label2city_512p --niter 50 --niter_decay 50
    --niter_fix_global 10 --resize_or_crop none, at 2048x1024, in bf16 with rematerialised
    residual blocks, discriminator scales and VGG slices: 10.5 GB on XLA:CPU, 16.9 GB as
    compiled for one TPU v5e chip (`python -m p2p_jax.benchmark memory`; docs/pix2pixhd.md)."""
    dataset, model, opt = config.dataset, config.model, config.optimizer
    dataset.load_size = 2048
    dataset.image_size = (1024, 2048)  # Full resolution (width 2048: nothing scaled).
    model.generator = "local"
    model.ngf = 32  # The global branch runs at 64 (ngf * 2**n_local_enhancers), as stage 1.
    model.n_local_enhancers = 1
    model.n_blocks_local = 3
    model.num_d = 3
    model.init_from = "workdirs/cityscapes_hd"  # Stage 1's default workdir (--load_pretrain).
    opt.fix_global_steps = 10 * TRAIN_IMAGES  # --niter_fix_global 10 (epochs)
    config.num_train_steps = 100 * TRAIN_IMAGES  # --niter 50 --niter_decay 50
    opt.constant_steps = 50 * TRAIN_IMAGES
    opt.decay_steps = 50 * TRAIN_IMAGES
    model.remat = "blocks"
    config.dtype = "bfloat16"
    config.eval.tile_pixels = 2048 * 1024
