"""Fluorescence restoration: a noisy, blurred one-channel widefield view -> the clean
two-channel (nuclei, cytoplasm) 16-bit image, on the embedded synthetic cells.

The scientific-data path end to end with nothing to download: 16-bit data read and written
without loss, one channel in and two out, the input mapped by percentiles of the training
split (saved in config.json, so predict and serve map new images the same way) and the
output by its 16-bit range, metrics in the data's range. For your own clean 16-bit
multi-channel TIFFs (train/ and val/ folders):
`--config.dataset.source=images --config.dataset.path=/data/cells`; for measured pairs (A/ and
B/ folders of TIFF or .npy): `--config.dataset.source=paired --config.dataset.task=paired`.
"""

from p2p_jax.config import defaults as default


def get_config(variant: str = ""):
    """Variants: those of default.apply_variant (`:reference`, `:podB`)."""
    config = default.measured_recipe(default.get_config())
    config.dataset.source = "synthetic_cells"
    config.dataset.task = "fluorescence"
    config.dataset.num_train = 1000
    config.dataset.num_eval = 32
    config.dataset.load_size = 96
    config.dataset.image_size = 64
    config.dataset.preprocess = "crop"  # Resizing would change the measured values.
    # Inputs by the training split's 0.1 and 99.9 percentiles (any camera's offset and gain);
    # outputs by the 16-bit range, which the generator's tanh can reach in full (an output
    # mapped by percentiles could never exceed the top one).
    config.dataset.normalize.input = "percentile"
    config.dataset.normalize.output = "dtype"
    config.model.dropout = 0.0  # A measurement: the same input gives the same output.
    config.num_train_steps = 2000
    config.serve.palette = "none"
    return default.apply_variant(config, variant)
