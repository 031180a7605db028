"""Start-up checks of the config: every mistake is one clear line, before any compilation.

Imports name tables and size rules only (`choices`, `sizes`):
checking a config loads no network, evaluator or data code.
"""

from __future__ import annotations

import functools

import ml_collections

from p2p_jax.config import choices
from p2p_jax.config.sizes import downsampling_factor, image_hw
from p2p_jax.errors import ConfigError


def _choice(key: str, value: str, names: tuple[str, ...]) -> None:
    if value not in names:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(names)}")


def _positive(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{key}={value} must be positive")


# Upper bounds where a larger value only exhausts memory or invites abuse of a public server.
_AT_MOST = {"batch_size": 65536, "eval.batch_size": 4096, "num_sample_images": 256,
            "serve.concurrency": 64, "serve.queue_size": 10000, "serve.max_upload_mb": 4096}


# The CPU forms of the transposed conv were upsample modes before model.conv_impl existed.
_FORMER_UPSAMPLE = {"auto": "conv_transpose", "subpixel": "conv_transpose",
                    "space_to_depth": "conv_transpose", "matmul": "conv_transpose"}


def _upsample(value: str) -> None:
    if value in _FORMER_UPSAMPLE:
        raise ConfigError(f"model.upsample={value!r} is gone: use "
                          f"model.upsample={_FORMER_UPSAMPLE[value]} (the CPU forms of the "
                          "transposed conv are chosen by model.conv_impl=auto|xla|cpu)")
    _choice("model.upsample", value, choices.UPSAMPLE_MODES)


def _image_size(image_size) -> tuple[int, int]:
    pair = (isinstance(image_size, tuple | list) and len(image_size) == 2
            and all(isinstance(v, int) for v in image_size))
    if not (isinstance(image_size, int) or pair) or min(image_hw(image_size)) <= 0:
        raise ConfigError(f"dataset.image_size={image_size!r} must be a positive side or "
                          "(height, width), e.g. --config.dataset.image_size=\"(512, 1024)\"")
    return image_hw(image_size)


def _pix2pixhd(config: ml_collections.ConfigDict) -> None:
    """Label maps, the multi-scale discriminator's losses, the coarse-to-fine schedule."""
    dataset, model, loss, opt = config.dataset, config.model, config.loss, config.optimizer
    _choice("model.remat", model.remat, choices.REMAT)
    _choice("optimizer.update_order", opt.update_order, choices.UPDATE_ORDERS)
    if not 0 <= dataset.label_nc <= 256:
        raise ConfigError(f"dataset.label_nc={dataset.label_nc} must be 0 (A is an image) or "
                          "the number of classes, at most 256")
    if dataset.source == "cityscapes" and not dataset.label_nc:
        raise ConfigError(f"dataset.source={dataset.source!r} reads label ids: set "
                          "dataset.label_nc (35 for Cityscapes' label ids)")
    if dataset.label_nc and dataset.task != "paired":
        raise ConfigError("dataset.label_nc > 0 reads label maps from the data: use "
                          "dataset.task=paired")
    if dataset.instance_maps and not (dataset.label_nc and dataset.source in (
            *choices.LABEL_SOURCES, "array_record")):
        raise ConfigError("dataset.instance_maps needs label maps with instance maps: "
                          "dataset.label_nc > 0 and dataset.source=cityscapes, pix2pixhd or "
                          "array_record (converted from them)")
    for key in ("lambda_feat", "lambda_vgg"):
        if loss[key] < 0:
            raise ConfigError(f"loss.{key}={loss[key]} must be >= 0")
    if loss.lambda_feat and model.discriminator != "multiscale":
        raise ConfigError("loss.lambda_feat (feature matching) reads the discriminator's layer "
                          "outputs: use model.discriminator=multiscale")
    if opt.fix_global_steps < 0 or (opt.fix_global_steps and model.generator != "local"):
        raise ConfigError(f"optimizer.fix_global_steps={opt.fix_global_steps}: only a "
                          "model.generator=local generator has a coarse branch to fix; >= 0")
    if model.n_blocks_global < 0 or model.n_blocks_local < 0:
        raise ConfigError("model.n_blocks_global and model.n_blocks_local must be >= 0")


def _best_checkpoints(config: ml_collections.ConfigDict) -> None:
    checkpoint = config.checkpoint
    _choice("checkpoint.best_mode", checkpoint.best_mode, choices.BEST_MODES)
    _positive("checkpoint.keep_best", checkpoint.keep_best)
    _positive("monitor.window_steps", config.monitor.window_steps + 1)  # 0 is allowed: off.
    if checkpoint.best_metric and not checkpoint.best_metric.startswith("eval/"):
        raise ConfigError(f"checkpoint.best_metric={checkpoint.best_metric!r} must be a "
                          "periodic-eval scalar such as 'eval/l1' or 'eval/psnr'")
    if checkpoint.best_metric:
        name = checkpoint.best_metric.removeprefix("eval/")
        known = choices.eval_scalars(config.eval.evaluators)
        if name not in known:
            raise ConfigError(f"checkpoint.best_metric={checkpoint.best_metric!r} is not a "
                              f"scalar this run evaluates; use one of "
                              f"{', '.join('eval/' + k for k in known)}")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first bad key."""
    _choice("dtype", config.dtype, choices.DTYPES)
    if config.mesh.memory_limit_gb < 0:
        raise ConfigError(f"mesh.memory_limit_gb={config.mesh.memory_limit_gb} must be >= 0 "
                          "(0: the device's own memory)")
    _choice("model.generator", config.model.generator, choices.GENERATORS)
    _choice("model.discriminator", config.model.discriminator, choices.DISCRIMINATORS)
    _choice("model.norm", config.model.norm, choices.NORMS)
    _upsample(config.model.upsample)
    _choice("model.conv_impl", config.model.conv_impl, choices.CONV_IMPLS)
    _choice("loss.gan_mode", config.loss.gan_mode, choices.GAN_MODES)
    _choice("optimizer.schedule", config.optimizer.schedule, choices.SCHEDULES)
    _choice("dataset.source", config.dataset.source, choices.SOURCES)
    _choice("dataset.preprocess", config.dataset.preprocess, choices.PREPROCESS_MODES)
    _choice("dataset.direction", config.dataset.direction, choices.DIRECTIONS)
    _choice("dataset.task", config.dataset.task, choices.TASKS)
    _choice("model.chroma", config.model.chroma, choices.CHROMA_SPACES)
    _choice("dataset.derived.color_space", config.dataset.derived.color_space,
            choices.COLOR_SPACES)
    _choice("dataset.derived.sr_kernel", config.dataset.derived.sr_kernel, choices.SR_KERNELS)
    _choice("dataset.derived.style", config.dataset.derived.style, choices.STYLES)
    if config.dataset.tfds_palette:
        _choice("dataset.tfds_palette", config.dataset.tfds_palette, choices.PALETTES)
    if config.model.residual and not config.model.generator.startswith(("unet", "resnet")):
        raise ConfigError(f"model.residual is for the U-Net and ResNet generators, not "
                          f"model.generator={config.model.generator!r}; set "
                          "model.residual=False")
    if config.model.residual and config.dataset.label_nc:
        raise ConfigError("model.residual adds the input image to the output; a label map "
                          "(dataset.label_nc) is not an image: set model.residual=False")
    _chroma(config)
    _values(config.dataset)
    if config.dataset.source == "synthetic_cells" and config.dataset.task == "paired":
        raise ConfigError("dataset.source='synthetic_cells' holds clean cell images only; set "
                          "dataset.task=fluorescence")
    if config.dataset.source == "images" and config.dataset.task == "paired":
        raise ConfigError("dataset.source='images' holds photos only; set dataset.task to a "
                          f"derived task ({', '.join(choices.TASKS[1:])})")
    for name in config.eval.evaluators:
        _choice("eval.evaluators", name, choices.EVALUATORS)
    _choice("serve.palette", config.serve.palette, choices.SERVE_PALETTES)
    for name in config.export.formats:
        _choice("export.formats", name, choices.EXPORT_FORMATS)
    _choice("wandb.mode", config.wandb.mode, choices.WANDB_MODES)
    if config.dataset.derived.noise_std < 0:
        raise ConfigError(f"dataset.derived.noise_std={config.dataset.derived.noise_std} "
                          "must be >= 0")
    for key in ("batch_size", "num_train_steps", "log_every_steps", "sample_every_steps",
                "checkpoint_every_steps", "eval_every_steps", "dataset.load_size",
                "dataset.derived.sr_factor", "model.ngf", "model.ndf", "eval.batch_size",
                "eval.sheet_examples",
                "nan_patience", "checkpoint.max_to_keep", "model.num_d", "model.n_layers_d",
                "model.n_downsample_global", "model.n_local_enhancers", "serve.concurrency",
                "serve.queue_size", "serve.max_upload_mb"):
        _positive(key, functools.reduce(getattr, key.split("."), config))
    for key, most in _AT_MOST.items():
        value = functools.reduce(getattr, key.split("."), config)
        if value > most:
            raise ConfigError(f"{key}={value} is over {most}, more than any run needs; "
                              "larger values only exhaust memory")
    height, width = _image_size(config.dataset.image_size)
    _pix2pixhd(config)
    if not 0 < config.dataset.max_image_pixels <= choices.MAX_IMAGE_PIXELS:
        raise ConfigError(f"dataset.max_image_pixels={config.dataset.max_image_pixels} must be "
                          f"in 1..{choices.MAX_IMAGE_PIXELS}")
    if not -(2**63) <= config.seed < 2**63:
        raise ConfigError(f"seed={config.seed} must fit in 64 bits (|seed| < 2**63)")
    if config.eval.tile_overlap < 0:
        raise ConfigError(f"eval.tile_overlap={config.eval.tile_overlap} must be >= 0")
    if not 0.0 <= config.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={config.model.dropout} must be in [0, 1)")
    if config.loss.lambda_l1 < 0:
        raise ConfigError(f"loss.lambda_l1={config.loss.lambda_l1} must be >= 0")
    if not 0.0 <= config.model.ema_decay < 1.0:
        raise ConfigError(f"model.ema_decay={config.model.ema_decay} must be in [0, 1) "
                          "(0: no moving average; e.g. 0.999)")
    if config.optimizer.d_learning_rate < 0:
        raise ConfigError(f"optimizer.d_learning_rate={config.optimizer.d_learning_rate} must "
                          "be >= 0 (0: optimizer.learning_rate)")
    _best_checkpoints(config)
    for name in config.loss.diff_augment:
        _choice("loss.diff_augment", name, choices.AUGMENTATIONS)
    if config.loss.r1_gamma < 0:
        raise ConfigError(f"loss.r1_gamma={config.loss.r1_gamma} must be >= 0 (0: off)")
    _positive("loss.r1_every", config.loss.r1_every)
    multiple = downsampling_factor(config.model)
    if height % multiple or width % multiple:
        raise ConfigError(
            f"dataset.image_size={config.dataset.image_size} is not a multiple of {multiple}, "
            f"which model.generator={config.model.generator!r} needs"
            + (" (2**model.num_downs)" if config.model.generator == "unet" else ""))
    crops = config.dataset.preprocess in ("resize_and_crop", "scale_width_and_crop")
    if crops and config.dataset.load_size < min(height, width):
        raise ConfigError(f"dataset.load_size={config.dataset.load_size} is smaller than "
                          f"dataset.image_size={config.dataset.image_size}, the crop taken from it")
    if config.eval.tile_pixels < multiple**2:
        raise ConfigError(f"eval.tile_pixels={config.eval.tile_pixels} is smaller than one "
                          f"{multiple}x{multiple} tile, the generator's smallest input")
    if config.model.generator == "unet" and config.model.num_downs < 2:
        raise ConfigError(f"model.num_downs={config.model.num_downs} must be at least 2")


# Channels beyond any image format's (a hyperspectral cube still fits); more is a mistake.
MAX_CHANNELS = 1024


def _values(dataset: ml_collections.ConfigDict) -> None:
    """Channels, pixel types and the value mapping of both sides."""
    norm = dataset.normalize
    for side in ("input", "output"):
        channels = dataset[f"{side}_channels"]
        if not 0 <= channels <= MAX_CHANNELS:
            raise ConfigError(f"dataset.{side}_channels={channels} must be 0 (as in the data) "
                              f"or a channel count up to {MAX_CHANNELS}")
        if dataset[f"{side}_dtype"]:
            _choice(f"dataset.{side}_dtype", dataset[f"{side}_dtype"], choices.DATA_DTYPES)
        _choice(f"dataset.normalize.{side}", norm[side], choices.NORMALIZATIONS)
        low, high = tuple(norm[f"{side}_low"]), tuple(norm[f"{side}_high"])
        key = f"dataset.normalize.{side}_low/_high"
        if len(low) != len(high) or not all(isinstance(v, int | float) for v in low + high):
            raise ConfigError(f"{key} must be numbers of equal count (one per channel, or one "
                              f"for all); got {low} and {high}")
        if any(h <= lo for lo, h in zip(low, high, strict=True)):
            raise ConfigError(f"{key}: each high must be above its low; got {low}, {high}")
        if norm[side] == "range" and not low:
            raise ConfigError(f"dataset.normalize.{side}='range' maps the values given: set "
                              f"dataset.normalize.{side}_low and _high, e.g. (0.0,) and (4095.0,)")
        if channels and len(low) not in (0, 1, channels):
            raise ConfigError(f"{key} give {len(low)} values for {channels} channels: give one "
                              "per channel, or one for all")
    lo, hi = tuple(norm.percentiles) if len(norm.percentiles) == 2 else (-1, -1)
    if not 0 <= lo < hi <= 100:
        raise ConfigError(f"dataset.normalize.percentiles={tuple(norm.percentiles)} must be "
                          "(low, high) with 0 <= low < high <= 100, e.g. (0.1, 99.9)")
    _positive("dataset.normalize.sample", norm.sample)
    for key in ("psf_sigma", "photons", "read_noise"):
        if dataset.derived[key] < 0 or (key == "photons" and not dataset.derived[key]):
            raise ConfigError(f"dataset.derived.{key}={dataset.derived[key]} must be "
                              f"{'positive' if key == 'photons' else '>= 0'}")


def check_resolved_data(config: ml_collections.ConfigDict) -> None:
    """What only the data's resolved channels and types can tell: the losses and evaluators
    that take RGB photos."""
    dataset, loss = config.dataset, config.loss
    if loss.lambda_vgg and dataset.output_channels not in (1, 3):
        raise ConfigError(f"loss.lambda_vgg: the VGG loss sees RGB photos; these targets have "
                          f"{dataset.output_channels} channels: set loss.lambda_vgg=0 (feature "
                          "matching, loss.lambda_feat, takes any channels)")
    chosen = tuple(config.eval.preview_channels)
    most = max(dataset.output_channels, 0 if dataset.label_nc else dataset.input_channels)
    if chosen and (len(chosen) != 3 or not all(isinstance(c, int) and 0 <= c < most
                                                for c in chosen)):
        raise ConfigError(f"eval.preview_channels={chosen} must be () (by channel count) or "
                          f"three channel indices below {most}, shown as red, green, blue")
    photos = dataset.output_dtype == "uint8" and dataset.output_channels in (1, 3)
    for name in set(config.eval.evaluators) & {"inception", "fcn"}:
        if not photos:
            raise ConfigError(f"eval.evaluators={name!r} scores 8-bit RGB photos; these targets "
                              f"are {dataset.output_channels}-channel {dataset.output_dtype}: "
                              f"leave {name} out of eval.evaluators (L1, PSNR and SSIM use the "
                              "data's range)")


def _chroma(config: ml_collections.ConfigDict) -> None:
    """`model.chroma` colours a one-channel image with a U-Net or ResNet, in the space whose
    lightness the derived colorization input is."""
    model, dataset = config.model, config.dataset
    if model.chroma == "none":
        return
    fix = "or set model.chroma=none"
    if not model.generator.startswith(("unet", "resnet")) or model.residual:
        raise ConfigError(f"model.chroma={model.chroma!r} is for the U-Net and ResNet "
                          f"generators without model.residual; set model.generator=unet_256 "
                          f"and model.residual=False, {fix}")
    if dataset.label_nc or dataset.input_channels not in (0, 1) or (
            dataset.output_channels not in (0, 3)):
        raise ConfigError(f"model.chroma={model.chroma!r} colours a gray image: set "
                          f"dataset.input_channels=1 and dataset.output_channels=3, {fix}")
    if dataset.task == "colorization":
        space = {"gray": "ycbcr", "lab": "lab"}[dataset.derived.color_space]
        if model.chroma != space:
            raise ConfigError(
                f"model.chroma={model.chroma!r} does not match the input's lightness "
                f"(dataset.derived.color_space={dataset.derived.color_space!r}): set "
                f"model.chroma={space}")
