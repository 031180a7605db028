"""Default config: the embedded labels->photo task, sized to learn visibly on a 2-core CPU.

Every knob of the trainer lives here (in the package, so a run's config.json reads back in an
installed copy); configs/*.py import it and change what differs.
Override anything from the command line: `--config.batch_size=16 --config.model.norm=instance`.
"""

import ml_collections
from ml_collections import config_dict

from p2p_jax.errors import ConfigError


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 8  # Global: split over every device of every process.
    config.num_train_steps = 3000
    config.log_every_steps = 50
    config.sample_every_steps = 250
    config.num_sample_images = 8
    config.checkpoint_every_steps = 500
    config.eval_every_steps = 500
    config.dtype = "float32"  # "bfloat16" on TPU/GPU: compute in bf16, params stay float32.
    # Steps with a non-finite loss or gradient are skipped; this many in a row stop training.
    config.nan_patience = 20

    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1  # Devices for pure data parallelism; -1: all that fsdp leaves.
    config.mesh.fsdp = 1  # >1: those devices also split large parameters and Adam moments.
    config.mesh.fsdp_min_size = 2**18  # Arrays smaller than this stay replicated.
    # >0: the memory (GB) the compiler fits each TPU chip's train step into; 0: the chip's
    # own. XLA packs buffers loosely while the step fits, so a budget leaves more headroom.
    config.mesh.memory_limit_gb = 0.0

    config.dataset = ml_collections.ConfigDict()
    # synthetic_scenes (embedded) | synthetic_cells (embedded 16-bit 2-channel cell images,
    # for task=fluorescence) | aligned (A|B files) | paired (A/ and B/ folders) |
    # images (plain photos, for derived tasks) | array_record (p2p_jax.data.convert) | tfds |
    # cityscapes (gtFine/ + leftImg8bit/ label ids, instance ids, photos) |
    # pix2pixhd (pix2pixHD's <split>_label/, <split>_inst/, <split>_img/, or _A/ and _B/)
    config.dataset.source = "synthetic_scenes"
    config.dataset.path = ""  # Folder (with train/, val/, test/) or ArrayRecord directory;
    # local or gs://.
    # ArrayRecord shards are read from local files only: for gs:// shards, a local folder
    # each process copies its split's shards to once (atomically; kept ones are reused).
    config.dataset.stage_to_local = ""
    config.dataset.direction = "AtoB"
    config.dataset.num_train = 2000  # synthetic_* sources only.
    config.dataset.num_eval = 64  # synthetic_* sources only.
    config.dataset.tfds_name = ""  # e.g. cityscapes/semantic_segmentation
    config.dataset.tfds_data_dir = ""  # "" = TFDS's default (~/tensorflow_datasets).
    config.dataset.tfds_a_key = ""  # Feature for A; "" = derived from B by `task`.
    config.dataset.tfds_b_key = "image"
    config.dataset.tfds_palette = ""  # "cityscapes": render A's label ids in these colours.
    # paired: A and B come from the data. Or A derived from the photo B: colorization |
    # super_resolution | edges | stylize | denoise (settings in `derived`).
    config.dataset.task = "paired"
    config.dataset.derived = ml_collections.ConfigDict()
    config.dataset.derived.color_space = "gray"  # colorization input: gray | lab (L channel)
    config.dataset.derived.sr_factor = 4
    config.dataset.derived.sr_kernel = "bicubic"  # bicubic | area | bilinear | gaussian
    config.dataset.derived.canny_low = 100
    config.dataset.derived.canny_high = 200
    # stylization | pencil_sketch | pencil_color | detail_enhance (OpenCV renderings)
    config.dataset.derived.style = "stylization"
    config.dataset.derived.noise_std = 25.0  # denoise: Gaussian noise on the 0..255 scale.
    # fluorescence: a widefield-like view of clean multi-channel images (any dtype): the
    # channels summed, blurred by a Gaussian PSF of this sigma (pixels), with Poisson shot
    # noise at `photons` per full-scale value and Gaussian read noise (fraction of full scale).
    config.dataset.derived.psf_sigma = 2.0
    config.dataset.derived.photons = 200.0
    config.dataset.derived.read_noise = 0.01
    # Training crop, the reference's crop_size: a side, or (height, width) as
    # --config.dataset.image_size="(512, 1024)".
    config.dataset.image_size = ml_collections.FieldReference(64, field_type=object)
    config.dataset.load_size = 72  # Resize target before cropping; the reference's load_size.
    config.dataset.preprocess = "resize_and_crop"
    config.dataset.flip = True
    # Label maps (pix2pixHD): A holds class ids, one-hot encoded on the device into this many
    # channels (Cityscapes label ids: 35); 0 = A is an image.
    config.dataset.label_nc = 0
    # With label maps: add the instance-boundary channel (1 where a pixel's instance id differs
    # from a 4-neighbour's), from the source's instance maps.
    config.dataset.instance_maps = False
    # 0: as in the data (the most channels among 16 sampled examples); 1 or 3: every image
    # converted to it. The same for the targets (output_channels).
    config.dataset.input_channels = 0
    config.dataset.output_channels = 0
    # Pixel types, read without loss (16-bit PNG and TIFF, float TIFF, .npy): "" = as in the
    # data (the widest among the sampled examples) | uint8 | uint16 | float32. Outputs are
    # written in output_dtype (predict: 16-bit PNG, TIFF or .npy as the type needs).
    config.dataset.input_dtype = ""
    config.dataset.output_dtype = ""
    # How each side's values map to the networks' [-1, 1], per channel: dtype (0..255,
    # 0..65535; float32 as 0..1) | percentile (the `percentiles` of the training split's
    # values, from up to `sample` examples spread over it) | range (input_low/high as given).
    # Resolved once when training starts and saved in config.json (the low/high keys), so
    # eval, predict, export and serve map values exactly as training did.
    config.dataset.normalize = ml_collections.ConfigDict()
    config.dataset.normalize.input = "dtype"
    config.dataset.normalize.output = "dtype"
    config.dataset.normalize.percentiles = (0.1, 99.9)
    config.dataset.normalize.sample = 256
    config.dataset.normalize.input_low = ()  # Per channel, or one value for every channel.
    config.dataset.normalize.input_high = ()
    config.dataset.normalize.output_low = ()
    config.dataset.normalize.output_high = ()
    # Images of more pixels are bad files (skipped and counted), refused from their header
    # before decoding: a few MB of PNG can decode to tens of GB. At most 178956970 (PIL's).
    config.dataset.max_image_pixels = 100_000_000
    config.dataset.worker_count = 0  # Grain worker processes; 0 reads in this process.
    config.dataset.read_threads = 2
    config.dataset.prefetch_buffer_size = 4

    config.model = ml_collections.ConfigDict()
    # unet_128 | unet_256 | unet | resnet_6blocks | resnet_9blocks (the reference's) |
    # global | local (pix2pixHD's GlobalGenerator and LocalEnhancer)
    config.model.generator = "unet"
    config.model.num_downs = 6  # For `unet`: image_size must be a multiple of 2**num_downs.
    config.model.ngf = 32
    config.model.discriminator = "basic"  # basic | n_layers | pixel | multiscale (pix2pixHD's)
    config.model.n_layers_d = 3
    config.model.ndf = 32
    config.model.num_d = 2  # multiscale: PatchGANs, each on the input pooled once more.
    # pix2pixHD's generators (their options' names and defaults).
    config.model.n_downsample_global = 4
    config.model.n_blocks_global = 9
    config.model.n_local_enhancers = 1
    config.model.n_blocks_local = 3
    # Rematerialisation: none | blocks (jax.checkpoint per residual block, per discriminator
    # scale and per VGG slice: activations recomputed in the backward pass, for memory).
    config.model.remat = "none"
    # Start from another run's weights: "WORKDIR" or "WORKDIR:STEP" (a `global` run into a
    # `local` generator's coarse branch, as pix2pixHD's --load_pretrain). Ignored on resume.
    config.model.init_from = ""
    config.model.norm = "batch"  # batch | instance | none
    config.model.dropout = 0.5
    # conv_transpose (the reference's) | resize_nearest | resize_bilinear (resize, then 3x3 conv)
    config.model.upsample = "conv_transpose"
    # True: the generator outputs its input plus what it learns to add (clipped to the image
    # range), as super-resolution networks since VDSR do, so training starts from the input
    # (the bicubic image for super-resolution) rather than from noise. U-Net and ResNet
    # generators, image inputs with as many channels as the output; no new parameters.
    config.model.residual = False
    # Colorization: the generator predicts two chroma channels and its output is the gray
    # input's lightness in that colour, so lightness is never lost and an unsure colour falls
    # back to gray instead of a cast (p2p_jax/models/color.py). none | ycbcr (a luma input:
    # dataset.derived.color_space=gray) | lab (a CIE L* input: color_space=lab). U-Net and
    # ResNet generators, 1 channel in, 3 out.
    config.model.chroma = "none"
    # How convolutions run (same function and parameters either way; see p2p_jax/ops):
    # auto (CPU forms on CPU within one process, XLA's own elsewhere) | xla | cpu. Exports
    # use xla.
    config.model.conv_impl = "auto"
    # Test-time normalisation for samples, eval, predict, serve and export. True: running
    # statistics, no dropout (the reference's --eval); False: each image normalised by its own
    # statistics, dropout on (the reference's default test). Unset: True where training
    # normalised over batches of several images (norm batch, batch_size > 1), else False, so
    # a model is tested with the statistics it was trained with.
    config.model.eval_mode = config_dict.placeholder(bool)
    # >0 (e.g. 0.999): training keeps an exponential moving average of the generator's
    # weights, which samples, eval, predict, serve and export use (after n updates the decay
    # is min(ema_decay, (1 + n) / (10 + n)), so early averages are not the initial weights).
    # 0: the trained weights themselves, as the reference.
    config.model.ema_decay = 0.0
    # Spectral normalisation of every discriminator kernel (one power-iteration step per
    # training step; the vectors live in the train state).
    config.model.spectral_norm_d = False

    config.loss = ml_collections.ConfigDict()
    config.loss.gan_mode = "vanilla"  # vanilla | lsgan | hinge (summed over D scales)
    config.loss.lambda_l1 = 100.0
    # pix2pixHD: feature matching between D's features on real and fake pairs (its
    # lambda_feat, 10) and the VGG19 perceptual loss (also 10 there); 0 = off.
    config.loss.lambda_feat = 0.0
    config.loss.lambda_vgg = 0.0
    # torchvision's ImageNet VGG19, vgg19-dcbb9e9d.pth (read without torch; never downloaded).
    config.loss.vgg_weights = ""
    # True: VGG sees ImageNet-normalised [0, 1] images (torchvision's convention); False:
    # [-1, 1] images as they are (what pix2pixHD feeds it).
    config.loss.vgg_normalize = True
    # Differentiable augmentation of the pairs D sees, identical for real and fake pairs
    # (DiffAugment), for small datasets: any of "color" (the image, not the condition),
    # "translation", "cutout" (both images of a pair), e.g. ("color", "translation", "cutout").
    config.loss.diff_augment = ()
    # R1 penalty on real pairs (gamma / 2 * |grad of D wrt the real image|^2), computed every
    # r1_every steps and weighted by it (lazy regularisation); 0 = off.
    config.loss.r1_gamma = 0.0
    config.loss.r1_every = 16

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.learning_rate = 2e-4
    # The discriminator's own rate on the same schedule (two time-scale updates, TTUR: e.g.
    # 4e-4 with learning_rate 1e-4); 0: learning_rate, as the reference.
    config.optimizer.d_learning_rate = 0.0
    config.optimizer.b1 = 0.5
    config.optimizer.b2 = 0.999
    config.optimizer.schedule = "linear"  # linear | cosine | step | constant
    # `linear`: constant for constant_steps, then linear decay to 0 over decay_steps (steps,
    # half of the run each by default, like the reference's 100 + 100 epochs).
    steps = config.get_ref("num_train_steps")
    config.optimizer.constant_steps = steps // 2
    config.optimizer.decay_steps = steps - steps // 2
    config.optimizer.step_size = steps // 4  # `step`: multiply by step_gamma every step_size.
    config.optimizer.step_gamma = 0.1
    # The update order: d_then_g (pix2pix: D updated, then G through the updated D) | joint
    # (pix2pixHD: both losses from one D forward pass, both networks updated).
    config.optimizer.update_order = "d_then_g"
    # `local` generators: train only the enhancer for this many steps (pix2pixHD's
    # --niter_fix_global, in steps), then everything.
    config.optimizer.fix_global_steps = 0

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.max_to_keep = 3
    config.checkpoint.async_save = True
    # On SIGTERM: finish the step, save, wait for the save, exit 0; warn if slower than this.
    config.checkpoint.preemption_timeout_s = 60.0
    # A periodic-eval scalar (e.g. "eval/l1", "eval/fid"): the keep_best checkpoints that
    # scored best on it are also kept, in WORKDIR/checkpoints_best/ (--step=best picks the
    # best). best_mode: min | max | auto (min for l1, fid, kid; max for the rest).
    config.checkpoint.best_metric = ""
    config.checkpoint.best_mode = "auto"
    config.checkpoint.keep_best = 1  # How many best checkpoints are kept.

    config.eval = ml_collections.ConfigDict()
    config.eval.split = "val"
    config.eval.num_examples = 64
    config.eval.batch_size = 16
    # Always: L1, PSNR, SSIM (and MS-SSIM from 161 px). Add "inception" (FID, KID; needs
    # inception_weights, the pytorch-fid .pth file) and/or "fcn" (FCN-score for labels->photo;
    # needs fcn_model, a jax.export segmentation network; see p2p_jax/eval/fcn_score.py).
    config.eval.evaluators = ()
    # predict: inputs of more pixels are translated in overlapping square tiles of at most
    # this many, blended over tile_overlap pixels (bounded memory; per-image normalisation
    # is then per tile).
    # Channels shown as RGB in sheets, samples and serve: () = by count (1 gray; 2 a
    # green/magenta composite; 3 RGB; more: the first three), or three channel indices.
    config.eval.preview_channels = ()
    config.eval.sheet_examples = 64  # The first this many in the report's contact sheet.
    config.eval.tile_pixels = 2**22
    config.eval.tile_overlap = 64
    config.eval.inception_weights = ""
    config.eval.fcn_model = ""

    config.export = ml_collections.ConfigDict()
    # What --mode=export writes: saved_model (TF, via jax2tf), stablehlo (jax.export),
    # onnx (generator.onnx, via jax2onnx), torch (generator.pth and generator.safetensors in
    # the reference's or pix2pixHD's state_dict layout; models that have one).
    config.export.formats = ("saved_model", "stablehlo", "onnx", "torch")

    config.serve = ml_collections.ConfigDict()
    # --mode=serve's canvas: auto (from the data: the embedded scenes' classes, Cityscapes
    # label ids for label-map models, else an upload) | scenes | cityscapes | cityscapes_ids |
    # facades | camvid | edges (pen and eraser on white) | none (upload only).
    config.serve.palette = "auto"
    config.serve.concurrency = 2  # Requests translated at once (Gradio's queue).
    config.serve.queue_size = 16  # Requests waiting beyond those; more are told to retry.
    config.serve.max_upload_mb = 32  # Larger uploads are refused before they are stored.
    config.serve.num_examples = 4  # Example inputs from the eval split (0: none).

    config.wandb = ml_collections.ConfigDict()
    # Mirror the training scalars and sample grids to Weights & Biases (pip install
    # 'p2p_jax[wandb]'), as the reference's --use_wandb; TensorBoard is written either way.
    config.wandb.enabled = False
    config.wandb.project = "p2p_jax"
    config.wandb.entity = ""  # "": your default entity.
    config.wandb.name = ""  # "": the workdir's name. A resumed run continues the same W&B run.
    # auto (online when logged in or WANDB_API_KEY is set, else offline: `wandb sync` later)
    # | online | offline.
    config.wandb.mode = "auto"

    config.monitor = ml_collections.ConfigDict()
    # One warning (and the scalar train/unstable = 1) when, for this many steps in a row, D's
    # loss stays under d_loss_floor or G's GAN loss over g_gan_ceiling; 0 = no watch.
    config.monitor.window_steps = 500
    # D wins outright under this loss (per discriminator scale; suits gan_mode="vanilla").
    config.monitor.d_loss_floor = 0.05
    # G's GAN loss over this (per discriminator scale) diverges; for lsgan, use about 0.9.
    config.monitor.g_gan_ceiling = 8.0

    config.debug = ml_collections.ConfigDict()
    # Fault injection for tests: these steps get NaN inputs (so a non-finite loss).
    config.debug.nonfinite_steps = ()
    return config.lock()


def reference_256(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The reference's standard setting: pix2pix aligned folders, resize to 286, random 256
    crops, unet_256 + 70x70 PatchGAN with 64 filters, batch 1."""
    config.dataset.source = "aligned"
    config.dataset.image_size = 256
    config.dataset.load_size = 286
    config.model.generator = "unet_256"
    config.model.ngf = 64
    config.model.ndf = 64
    config.batch_size = 1
    return config


def measured_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The 2017 recipe plus what the ablation on real photographs and real pairs measured to
    help (benchmarks/README.md, "The recipe ablation"): a lazy R1 penalty on real pairs, at
    the strength that measured best ("R1's strength": gamma 1 held D at chance, so the GAN
    term added nothing). The moving average, spectral norm, two time-scale rates and
    DiffAugment did not measurably help there and stay off. The pix2pix task configs start
    from this; `:reference` undoes it."""
    config.loss.r1_gamma = 0.01
    return config


def photo_task(task: str) -> ml_collections.ConfigDict:
    """A derived task (colorization, super_resolution, stylize, ...) at the reference's 256x256
    settings, on a folder of photos at `dataset.path` (train/ and val/ inside)."""
    config = measured_recipe(reference_256(get_config()))
    config.dataset.source = "images"
    config.dataset.task = task
    config.num_train_steps = 100000
    config.log_every_steps = 200
    config.sample_every_steps = 5000
    config.checkpoint_every_steps = 10000
    config.eval_every_steps = 10000
    return config


def scale_to_batch(config: ml_collections.ConfigDict, global_batch: int) -> None:
    """Pod-sized variant of a task config: same epochs at a larger global batch.

    The learning rate follows square-root scaling from the config's batch (safer than linear
    scaling for Adam on a GAN), steps shrink so the number of epochs stays the same, and
    compute moves to bfloat16 (parameters and Adam stay float32).
    """
    ratio = global_batch / config.batch_size
    config.optimizer.learning_rate = config.optimizer.learning_rate * ratio**0.5
    config.num_train_steps = max(int(config.num_train_steps / ratio), 1)
    config.log_every_steps = max(int(config.log_every_steps / ratio), 1)
    for key in ("sample_every_steps", "checkpoint_every_steps", "eval_every_steps"):
        config[key] = max(int(config[key] / ratio), 1)
    config.batch_size = global_batch
    config.dtype = "bfloat16"


def reference_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The 2017 recipe exactly (pix2pix's, or pix2pixHD's for its configs): none of the later
    additions (moving average, spectral norm, two time-scale rates, augmentation, R1), and
    tested as the reference's test script does by default (per-image statistics, dropout on),
    so that a comparison with the PyTorch reference is like for like."""
    config.model.ema_decay = 0.0
    config.model.spectral_norm_d = False
    config.optimizer.d_learning_rate = 0.0
    config.loss.diff_augment = ()
    config.loss.r1_gamma = 0.0
    config.model.eval_mode = False  # The reference tests without --eval.
    config.model.residual = False
    config.model.chroma = "none"
    return config


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """`""`: the config as is; `"reference"` (e.g. `--config=configs/facades.py:reference`):
    the 2017 recipe exactly; `"podB"` (e.g. `--config=configs/cityscapes.py:pod256`): scaled
    to a global batch of B for a TPU pod slice or GPU cluster. Several, comma-separated
    (`:reference,pod64`), apply in turn."""
    for part in filter(None, variant.split(",")):
        if part == "reference":
            reference_recipe(config)
        elif part.startswith("pod") and part[3:].isdigit() and int(part[3:]) > 0:
            scale_to_batch(config, int(part[3:]))
        else:
            raise ConfigError(f"unknown config variant {part!r}; use reference, or podB, "
                              "e.g. pod64")
    return config
