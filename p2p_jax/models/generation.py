"""Running a generator: what it takes beyond its weights (`Generator`), its input encoding,
the dtype conversions, per-image randomness and `generate`.

Training (its samples and periodic evaluation), `--mode=eval`, predict, export and serve all
generate through this module; the training recipe holds a `Generator`, and inference restores
a `TrainedGenerator` (the weights alone, see `serving/restore.py`) without the training stack.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from p2p_jax import ops
from p2p_jax.data import values
from p2p_jax.models.build import build_generator

PyTree = Any

# Seeds of the fixed randomness outside training, offsets from `config.seed`: the sample grid's
# and the evaluation's dropout (predict and exports use the seed itself).
SAMPLE_SEED_OFFSET, EVAL_SEED_OFFSET = 1, 2


@dataclasses.dataclass(frozen=True)
class Generator:
    """A generator network with how it reads its input and how it runs at test time.

    `label_nc`: A holds class ids, one-hot encoded into this many channels (`instance_maps`:
    plus the boundary map E as one more); `label_lookups`: the ids stay ids and convolve as
    lookups (`ops.uses_label_lookups`). `eval_mode` False is the reference's test: per-image
    batch statistics and dropout; True: running statistics, no dropout (`from_config`
    resolves an unset `model.eval_mode` with `tests_with_running_statistics`).
    `input_values` / `output_values`: the pixel types and value ranges of A and B
    (`data/values.py`); 8-bit photos by default."""

    network: nn.Module
    label_nc: int = 0
    instance_maps: bool = False
    label_lookups: bool = False
    eval_mode: bool = False
    input_values: values.ValueMap = values.UINT8
    output_values: values.ValueMap = values.UINT8

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, conv_impl: str = "xla",
                    label_lookups: bool = False) -> Generator:
        """The generator of a config whose channels are resolved; `conv_impl` as resolved by
        `ops.resolve_impl`."""
        dataset = config.dataset
        return cls(network=build_generator(config, dataset.output_channels, conv_impl),
                   label_nc=dataset.label_nc, instance_maps=dataset.instance_maps,
                   label_lookups=label_lookups and bool(dataset.label_nc),
                   eval_mode=tests_with_running_statistics(config),
                   input_values=values.side_map(dataset, "input"),
                   output_values=values.side_map(dataset, "output"))

    @property
    def dtype(self):
        return self.network.dtype


def tests_with_running_statistics(config: ml_collections.ConfigDict) -> bool:
    """`model.eval_mode`, or where it is unset, whether training normalised over batches of
    several images: such running statistics are what the model learned with, while one
    image's own statistics (down to 2x2 pixels inside a U-Net) are not. Batch 1 keeps the
    reference's per-image test exact."""
    if config.model.eval_mode is not None:
        return bool(config.model.eval_mode)
    return config.model.norm == "batch" and config.batch_size > 1


@flax.struct.dataclass
class GeneratorVariables:
    """A generator's weights: its parameters and its normalisation layers' running statistics."""

    params: PyTree
    batch_stats: PyTree


@dataclasses.dataclass(frozen=True)
class TrainedGenerator:
    """A generator ready to translate: its run's config (channels resolved), the mesh its
    weights live on, and the checkpoint step they come from."""

    config: ml_collections.ConfigDict
    mesh: Mesh
    generator: Generator
    variables: GeneratorVariables
    step: int


def model_input_channels(dataset: ml_collections.ConfigDict) -> int:
    """The generator's input channels: one-hot classes (and the boundary channel) for label
    maps, else the images' channels."""
    if dataset.label_nc:
        return dataset.label_nc + int(dataset.instance_maps)
    return dataset.input_channels


def to_float(images: jax.Array, value_map: values.ValueMap) -> jax.Array:
    """Pixel values -> float32, `value_map`'s low..high as -1..1 (per channel); for uint8
    photos x / 127.5 - 1, the reference's."""
    low, half = value_map.scale()
    x = images.astype(jnp.float32)
    if np.any(low):
        x = x - low
    return x / half - 1.0


def to_data(floats: jax.Array, value_map: values.ValueMap) -> jax.Array:
    """[-1, 1] floats -> `value_map`'s values and dtype, on the device (uint8: 4x less to
    fetch than float32); integer types rounded and clipped to their range."""
    low, half = value_map.scale()
    x = (floats.astype(jnp.float32) + 1.0) * half
    if np.any(low):
        x = x + low
    if not value_map.integer:
        return x
    top = values.DTYPE_RANGES[value_map.dtype][1]
    return jnp.clip(jnp.round(x), 0, top).astype(value_map.dtype)


def apply_network(module: nn.Module, params: PyTree, stats: PyTree, x: jax.Array, train: bool,
                  rng: jax.Array | None = None) -> tuple[jax.Array, PyTree]:
    """Applies a network and returns (output, updated batch statistics)."""
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    rngs = {"dropout": rng} if rng is not None else {}
    out, mutated = module.apply(variables, x, train=train, rngs=rngs, mutable=["batch_stats"])
    return out, mutated.get("batch_stats", stats)


def encode_input(generator: Generator, batch: dict[str, jax.Array]) -> jax.Array | ops.OneHotMap:
    """The generator's (and the discriminator's conditioning) input: an image A in [-1, 1]
    (its `input_values` mapped),
    or a label map's class ids one-hot (0/1, pix2pixHD's encoding, in the compute dtype) with
    the instance-boundary map E as one more 0/1 channel; with `generator.label_lookups` kept
    as ids (`ops.OneHotMap`, whose convolutions are lookups)."""
    if not generator.label_nc:
        return to_float(batch["A"], generator.input_values)
    boundary = batch["E"][..., 0] if generator.instance_maps else None
    labels = ops.OneHotMap.encode(batch["A"][..., 0], generator.label_nc, boundary)
    # 0/1 are exact in bfloat16: half the bytes at 2048x1024.
    return labels if generator.label_lookups else labels.dense(generator.dtype)


def host_key(seed: int) -> np.ndarray:
    """PRNGKey(seed) as a host array, to pass to code that runs under the transfer guard."""
    return np.asarray(jax.random.PRNGKey(seed), np.uint32)


def image_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
    """One PRNG key per image, fold_in(key, index): an image's randomness depends on its index
    alone, not on the batch it is generated in."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, indices)


def generate(generator: Generator, variables: GeneratorVariables,
             inputs: dict[str, jax.Array], keys: jax.Array | None) -> jax.Array:
    """Generator outputs in [-1, 1] for inputs ('A', and 'E' with instance maps), as
    the reference's test script makes them.

    Without `eval_mode` (the reference's default) each image is normalised with its own batch
    statistics and keeps dropout (drawn from its row of `keys`), exactly like the reference
    testing at batch size 1; with it, running statistics and no dropout. `keys` None: a
    generator without dropout (exports whose format has no random numbers).
    """
    x = encode_input(generator, inputs)
    params, stats = variables.params, variables.batch_stats
    if generator.eval_mode:
        return apply_network(generator.network, params, stats, x, False)[0]

    def one(image, key):
        batch_of_one = jax.tree.map(lambda a: a[None], image)  # An array or a OneHotMap.
        out, _ = apply_network(generator.network, params, stats, batch_of_one, True, key)
        return out[0]

    if keys is None:
        return jax.vmap(lambda image: one(image, None))(x)
    return jax.vmap(one)(x, keys)
