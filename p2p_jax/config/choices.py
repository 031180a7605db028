"""Every named choice of the config, in one light module (no JAX, no network code): the
start-up checks read these, and the modules that act on a choice dispatch over the same
names."""

DTYPES = ("float32", "bfloat16")
GENERATORS = ("unet_128", "unet_256", "unet", "resnet_6blocks", "resnet_9blocks", "global",
              "local")
DISCRIMINATORS = ("basic", "n_layers", "pixel", "multiscale")
REMAT = ("none", "blocks")
UPDATE_ORDERS = ("d_then_g", "joint")
NORMS = ("batch", "instance", "none")
CHROMA_SPACES = ("none", "ycbcr", "lab")
UPSAMPLE_MODES = ("conv_transpose", "resize_nearest", "resize_bilinear")
CONV_IMPLS = ("auto", "xla", "cpu")
GAN_MODES = ("vanilla", "lsgan", "hinge")
SCHEDULES = ("linear", "cosine", "step", "constant")
SOURCES = ("synthetic_scenes", "synthetic_cells", "aligned", "paired", "images",
           "array_record", "tfds", "cityscapes", "pix2pixhd")
# Sources whose A is a label map (class ids), and those that also carry instance maps.
LABEL_SOURCES = ("cityscapes", "pix2pixhd")
DIRECTIONS = ("AtoB", "BtoA")
TASKS = ("paired", "colorization", "super_resolution", "edges", "stylize", "denoise",
         "fluorescence")
# Pixel types a dataset side is held in (dataset.input_dtype / output_dtype), narrowest first.
DATA_DTYPES = ("uint8", "uint16", "float32")
# The values each type's `normalize=dtype` maps to [-1, 1]; float data is taken as 0..1
# (scikit-image's convention for float images), a uint image converted to float keeps it.
DTYPE_RANGES = {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0), "float32": (0.0, 1.0)}
# How a side's values map to [-1, 1] (dataset.normalize.input / output).
NORMALIZATIONS = ("dtype", "percentile", "range")
COLOR_SPACES = ("gray", "lab")
SR_KERNELS = ("bicubic", "area", "bilinear", "gaussian")
STYLES = ("stylization", "pencil_sketch", "pencil_color", "detail_enhance")
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
PALETTES = ("cityscapes",)
EVALUATORS = ("inception", "fcn")
BEST_MODES = ("auto", "min", "max")
AUGMENTATIONS = ("color", "translation", "cutout")
# The scalars of a periodic eval: always, and per extra evaluator. Lower is better for the
# distances (`checkpoint.best_mode="auto"`); higher for the rest.
IMAGE_SCALARS = ("l1", "psnr", "ssim", "ms_ssim")
EVALUATOR_SCALARS = {"inception": ("fid", "kid", "kid_std"),
                     "fcn": ("fcn_pixel_acc", "fcn_class_acc", "fcn_class_iou")}
LOWER_IS_BETTER = ("l1", "fid", "kid")


def eval_scalars(evaluators: tuple[str, ...]) -> tuple[str, ...]:
    """The names a periodic eval reports with these extra evaluators."""
    return IMAGE_SCALARS + tuple(name for evaluator in evaluators
                                 for name in EVALUATOR_SCALARS.get(evaluator, ()))
SERVE_PALETTES = ("auto", "scenes", "cityscapes", "cityscapes_ids", "facades", "camvid", "edges",
                  "none")
EXPORT_FORMATS = ("saved_model", "stablehlo", "onnx", "torch")
WANDB_MODES = ("auto", "online", "offline")
# The most pixels `dataset.max_image_pixels` may allow: PIL, which reads image headers for the
# check, refuses more on its own (2 x PIL.Image.MAX_IMAGE_PIXELS).
MAX_IMAGE_PIXELS = 178_956_970
