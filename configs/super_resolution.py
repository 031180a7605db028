"""4x super-resolution (bicubic-downsampled, upsampled back -> original) at 256x256, unet_256.

Low-resolution inputs are derived on the fly from any folder of photos (train/ and val/
subfolders): --config.dataset.path=/data/photos; change the factor or kernel with
--config.dataset.derived.sr_factor=2 --config.dataset.derived.sr_kernel=gaussian

Fidelity first: the generator adds a learned correction to its bicubic input
(`model.residual`) and L1 weighs LAMBDA_L1 against the GAN loss, so training starts at that
input and improves on it (without the residual, 600 steps at 128 px stay 3 dB below
bicubic). `:gan` is the sharper, GAN-weighted model (the reference's L1 x100, and no R1
penalty: R1 holds the discriminator at chance on these near-bicubic outputs, D loss 0.694 over
4,000 steps at 128 px, so the GAN would add nothing): more texture, lower PSNR.
"""

from p2p_jax.config import defaults as default

LAMBDA_L1 = 1000.0


def get_config(variant: str = ""):
    """Variants: `:gan`, the GAN-weighted model; those of default.apply_variant:
    `:reference`, the 2017 recipe exactly (L1 x100); `:podB`, a global batch of B; several
    comma-separated, e.g. `:gan,pod64`."""
    config = default.photo_task("super_resolution")
    config.dataset.load_size = 256
    config.dataset.preprocess = "crop"  # Resizing would blur the high-resolution target.
    config.batch_size = 4
    config.loss.lambda_l1 = LAMBDA_L1
    config.model.residual = True  # Starts from the bicubic input; learns what to add.
    parts = variant.split(",")
    if "gan" in parts or "reference" in parts:
        config.loss.lambda_l1 = 100.0
        config.loss.r1_gamma = 0.0
    return default.apply_variant(config, ",".join(p for p in parts if p != "gan"))
