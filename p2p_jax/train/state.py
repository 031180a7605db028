"""The train state, the recipe it is trained with, and the set-up of a training run.

`build(config)` turns a config into a `Setup`: the config with its channels resolved, the
device mesh, the `Recipe` (the generator with how it reads its input, the discriminator, both
with their convolution implementation chosen once for the mesh's platform; optimizers, loss
weights) and a freshly initialised state, born sharded. Training, model import and the
benchmarks start from it; inference restores the generator alone (`serving/restore.py`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from p2p_jax import ops, parallel
from p2p_jax.config.checks import validate_config
from p2p_jax.config.sizes import image_hw
from p2p_jax.data import pipeline
from p2p_jax.models import build as networks
from p2p_jax.models.generation import Generator, GeneratorVariables, model_input_channels
from p2p_jax.models.vgg import VGG19Features, load_params
from p2p_jax.train import optim, spectral

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Everything training needs to continue exactly: checkpointing saves this, nothing else."""

    step: jax.Array
    g_params: PyTree
    g_batch_stats: PyTree
    g_opt_state: PyTree
    d_params: PyTree
    d_batch_stats: PyTree
    d_opt_state: PyTree
    rng: jax.Array  # Base key; per-step randomness is fold_in(rng, step), so resume is exact.
    skipped_steps: jax.Array  # Steps whose update was dropped for a non-finite loss/gradient.
    nonfinite_streak: jax.Array  # Consecutive such steps up to now.
    # The generator's exponential moving average (`model.ema_decay`); {} when none is kept.
    ema_params: PyTree = dataclasses.field(default_factory=dict)
    ema_batch_stats: PyTree = dataclasses.field(default_factory=dict)
    # Spectral normalisation's power-iteration vectors per D kernel (`model.spectral_norm_d`).
    d_spectral_u: PyTree = dataclasses.field(default_factory=dict)

    @property
    def keeps_ema(self) -> bool:
        return bool(jax.tree.leaves(self.ema_params))

    def generator_variables(self) -> GeneratorVariables:
        """The weights inference uses (samples, eval): the moving average when training keeps
        one, else the trained weights."""
        if self.keeps_ema:
            return GeneratorVariables(self.ema_params, self.ema_batch_stats)
        return GeneratorVariables(self.g_params, self.g_batch_stats)

    def with_generator(self, params: PyTree, batch_stats: PyTree) -> TrainState:
        """The generator's weights replaced (imported, warm-started); a kept moving average
        starts again from them (copies: the train step donates every buffer of the state)."""
        ema = ({"ema_params": jax.tree.map(jnp.copy, params),
                "ema_batch_stats": jax.tree.map(jnp.copy, batch_stats)} if self.keeps_ema
               else {})
        return self.replace(g_params=params, g_batch_stats=batch_stats, **ema)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The static parts of training: the networks, their optimizers and the loss settings."""

    generator: Generator  # The network and how it reads its input (models.generation).
    discriminator: nn.Module
    g_tx: optax.GradientTransformationExtraArgs  # optim.skippable_adam: takes `apply`.
    d_tx: optax.GradientTransformationExtraArgs
    schedule: optax.Schedule
    gan_mode: str
    lambda_l1: float
    lambda_feat: float = 0.0
    lambda_vgg: float = 0.0
    perceptual: nn.Module | None = None  # VGG19 features; its weights come in `frozen`.
    update_order: str = "d_then_g"
    fix_global_steps: int = 0  # `local`: the coarse branch waits this many steps.
    ema_decay: float = 0.0  # The generator's moving average; 0: none kept.
    spectral_norm_d: bool = False
    diff_augment: tuple[str, ...] = ()  # DiffAugment's policy for the pairs D sees.
    r1_gamma: float = 0.0  # R1 on real pairs, every r1_every steps; 0: off.
    r1_every: int = 16
    # FSDP as one program per device (`step.per_device_fsdp`): the networks treat examples
    # independently (no batch norm) and take XLA's own convolutions.
    fsdp_per_device: bool = False

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, conv_impl: str = "xla",
                    label_lookups: bool = False) -> Recipe:
        """`conv_impl`: the resolved implementation of the convolutions (see p2p_jax.ops);
        `label_lookups`: see `ops.uses_label_lookups`."""
        opt, loss, model = config.optimizer, config.loss, config.model
        frozen = None
        if opt.fix_global_steps and model.generator == "local":
            def frozen(params):  # The coarse branch, as pix2pixHD's --niter_fix_global.
                return {name: jax.tree.map(lambda _, n=name: n == "global", tree)
                        for name, tree in params.items()}
        perceptual = None
        if loss.lambda_vgg:
            perceptual = VGG19Features(normalize=loss.vgg_normalize,
                                       remat=model.remat != "none", conv_impl=conv_impl,
                                       dtype=networks.compute_dtype(config))
        return cls(
            generator=Generator.from_config(config, conv_impl, label_lookups),
            discriminator=networks.build_discriminator(config, conv_impl),
            g_tx=optim.make_optimizer(opt, frozen),
            d_tx=optim.make_optimizer(opt, lr=opt.d_learning_rate or opt.learning_rate),
            schedule=optim.learning_rate_schedule(opt),
            gan_mode=loss.gan_mode,
            lambda_l1=loss.lambda_l1,
            lambda_feat=loss.lambda_feat,
            lambda_vgg=loss.lambda_vgg,
            perceptual=perceptual,
            update_order=opt.update_order,
            fix_global_steps=opt.fix_global_steps if frozen else 0,
            ema_decay=model.ema_decay,
            spectral_norm_d=model.spectral_norm_d,
            diff_augment=tuple(loss.diff_augment),
            r1_gamma=loss.r1_gamma,
            r1_every=loss.r1_every,
            fsdp_per_device=model.norm != "batch" and conv_impl == "xla",
        )


def init_state(recipe: Recipe, rng: jax.Array, input_shape: tuple[int, ...]) -> TrainState:
    """Initial state for inputs of `input_shape` (N, H, W, C_in); the target has C_out."""
    g_key, d_key, base = jax.random.split(rng, 3)
    a = jnp.zeros(input_shape, jnp.float32)
    g_vars = recipe.generator.network.init({"params": g_key}, a, train=False)
    b = jax.eval_shape(lambda: recipe.generator.network.apply(g_vars, a, train=False))
    pair = jnp.zeros((*input_shape[:3], input_shape[3] + b.shape[3]), jnp.float32)
    d_vars = recipe.discriminator.init({"params": d_key}, pair, train=False)
    g_batch_stats = g_vars.get("batch_stats", {})
    extra = {}
    if recipe.spectral_norm_d:
        extra["d_spectral_u"] = spectral.init_vectors(d_vars["params"],
                                                      jax.random.fold_in(d_key, 1))
    if recipe.ema_decay:  # Copies: the state is donated, so no two leaves may share a buffer.
        extra["ema_params"] = jax.tree.map(jnp.copy, g_vars["params"])
        extra["ema_batch_stats"] = jax.tree.map(jnp.copy, g_batch_stats)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_vars["params"],
        g_batch_stats=g_batch_stats,
        g_opt_state=recipe.g_tx.init(g_vars["params"]),
        d_params=d_vars["params"],
        d_batch_stats=d_vars.get("batch_stats", {}),
        d_opt_state=recipe.d_tx.init(d_vars["params"]),
        rng=base,
        skipped_steps=jnp.zeros((), jnp.int32),
        nonfinite_streak=jnp.zeros((), jnp.int32),
        **extra,
    )


def create_state(recipe: Recipe, seed: int, input_shape: tuple[int, ...], mesh: Mesh,
                 fsdp_min_size: int = 2**18, abstract: bool = False) -> TrainState:
    """`init_state` compiled straight into the state's shardings (no host copy of the
    parameters). Runs once, so it is compiled without backend optimisation (4x faster to
    compile on CPU). `abstract`: only the shapes, dtypes and shardings (nothing allocated)."""
    init = functools.partial(init_state, recipe, input_shape=input_shape)
    rng = jax.random.PRNGKey(seed)
    shapes = jax.eval_shape(init, rng)
    shardings = parallel.tree_shardings(shapes, mesh, fsdp_min_size)
    if abstract:
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            shapes, shardings)
    lowered = jax.jit(init, out_shardings=shardings).lower(rng)
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})(rng)


def batch_spec(config: ml_collections.ConfigDict, mesh) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes, dtypes and shardings of the pipeline's global batches."""
    ds, sharding = config.dataset, parallel.batch_sharding(mesh)
    height, width = image_hw(ds.image_size)

    def images(channels, dtype="uint8"):
        return jax.ShapeDtypeStruct((config.batch_size, height, width, channels), dtype,
                                    sharding=sharding)

    spec = {"A": images(ds.input_channels, ds.input_dtype or "uint8"),
            "B": images(ds.output_channels, ds.output_dtype or "uint8"),
            "skipped": jax.ShapeDtypeStruct((config.batch_size,), jnp.int32, sharding=sharding)}
    if ds.instance_maps:
        spec["E"] = images(1)
    return spec


@dataclasses.dataclass(frozen=True)
class Setup:
    """A config made runnable: channels resolved, mesh, recipe and initial state, and the
    weights of fixed networks the step reads (the perceptual loss's VGG19), replicated."""

    config: ml_collections.ConfigDict
    mesh: Mesh
    recipe: Recipe
    state: TrainState
    frozen: dict = dataclasses.field(default_factory=dict)


def build(config: ml_collections.ConfigDict, channels: int | None = None,
          devices: list[jax.Device] | None = None, abstract: bool = False) -> Setup:
    """A training run's set-up: checks the config (one line per mistake, before compiling),
    resolves channels (`channels` for both sides where the config leaves them to the data,
    e.g. synthetic benchmarks; else from the data), builds the mesh over `devices` (default:
    every device of every process), resolves `model.conv_impl` for its platform and
    initialises the state into its shardings. `abstract`: the state and
    the fixed networks' weights as shapes only (compiling to measure memory allocates
    nothing, and needs no weights file)."""
    validate_config(config)
    if channels:  # Synthetic batches of `channels`-channel 8-bit images: no data to read.
        config = config.copy_and_resolve_references()
        for side in ("input", "output"):
            config.dataset[f"{side}_channels"] = config.dataset[f"{side}_channels"] or channels
            config.dataset[f"{side}_dtype"] = config.dataset[f"{side}_dtype"] or "uint8"
    config = pipeline.resolve_data(config)
    mesh = parallel.create_mesh(config.mesh, devices)
    parallel.check_batch_size(config.batch_size, mesh)
    impl = ops.resolve_impl(config.model.conv_impl, mesh)
    recipe = Recipe.from_config(config, impl,
                                ops.uses_label_lookups(impl, mesh, networks.compute_dtype(config)))
    frozen = {}
    if recipe.perceptual is not None:
        frozen["vgg"] = (_abstract_vgg(recipe.perceptual, mesh) if abstract else
                         parallel.replicated_from_host(load_params(config.loss.vgg_weights),
                                                       mesh))
    height, width = image_hw(config.dataset.image_size)
    state = create_state(recipe, config.seed,
                         (1, height, width, model_input_channels(config.dataset)), mesh,
                         config.mesh.fsdp_min_size, abstract)
    return Setup(config, mesh, recipe, state, frozen)


def _abstract_vgg(vgg: nn.Module, mesh: Mesh) -> dict:
    shapes = jax.eval_shape(vgg.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                       sharding=parallel.replicated(mesh)),
                        shapes["params"])
