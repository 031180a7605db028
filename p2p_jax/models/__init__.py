"""The networks: the reference's U-Net and ResNet generators and PatchGAN discriminators
(`unet`, `resnet`, `discriminators`), pix2pixHD's coarse-to-fine generators and multi-scale
discriminator (`pix2pixhd`), the VGG19 of the perceptual loss (`vgg`); `build` makes them
from the config. Running a generator, in training and inference alike: `generation` (input
encoding, per-image keys, `generate`) and `translate` (any image size, tiles)."""
