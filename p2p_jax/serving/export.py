"""`--mode=export`: the generator for serving, as a TF SavedModel and as StableHLO.

Both take uint8 images (batch, H, W, C) at the training crop size (`dataset.image_size`; pad
or tile other sizes; label-map models take class ids, and the instance-boundary map as a
second channel) and a uint32[2] PRNG key (dropout and per-image normalisation follow
the trained model's test-time behaviour, as `--mode=predict`), and return uint8 images:

  OUT/saved_model/      tf.saved_model.load(...).translate(images, key)   (batch polymorphic)
  OUT/generator.stablehlo + OUT/generator_variables.msgpack
      jax.export.deserialize(...).call(variables, images, key)             (batch polymorphic)

The generator is exported with XLA's own convolutions (`model.conv_impl=auto` means "xla"
here), so a program written on a CPU host carries no CPU reformulations into the GPU/TPU
server that loads it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import serialization

from p2p_jax import fileio
from p2p_jax.serving.restore import Restored
from p2p_jax.sizes import image_hw
from p2p_jax.train import step as train_step
from p2p_jax.train.state import Recipe


def portable_impl(config) -> str:
    """The convolution implementation an export is built with: XLA's, unless the config
    asks for the CPU forms explicitly."""
    return "cpu" if config.model.conv_impl == "cpu" else "xla"


def _translate(recipe: Recipe, variables, images, key):
    """Generator application on explicit variables (what both exports contain); image i of the
    batch draws from fold_in(key, i), as the i-th file of `--mode=predict`. Label-map models
    take class ids, and with instance maps the boundary map as a second channel."""
    keys = train_step.image_keys(key, jnp.arange(images.shape[0], dtype=jnp.uint32))
    inputs = ({"A": images[..., :1], "E": images[..., 1:]} if recipe.instance_maps
              else {"A": images})
    return train_step.to_uint8(
        train_step.generate(recipe, variables["params"], variables["batch_stats"], inputs, keys))


def generator_variables(restored: Restored) -> dict:
    state = restored.setup.state
    return jax.device_get({"params": state.g_params, "batch_stats": state.g_batch_stats})


def _image_spec(restored: Restored, batch) -> jax.ShapeDtypeStruct:
    dataset = restored.config.dataset
    height, width = image_hw(dataset.image_size)
    channels = dataset.input_channels + int(dataset.instance_maps)
    return jax.ShapeDtypeStruct((batch, height, width, channels), jnp.uint8)


def export_stablehlo(restored: Restored, output: epath.Path) -> None:
    variables = generator_variables(restored)
    (batch,) = jax.export.symbolic_shape("b")
    exported = jax.export.export(jax.jit(functools.partial(_translate, restored.setup.recipe)))(
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables),
        _image_spec(restored, batch), jax.ShapeDtypeStruct((2,), jnp.uint32))
    fileio.write_bytes(output / "generator.stablehlo", exported.serialize())
    fileio.write_bytes(output / "generator_variables.msgpack",
                  serialization.msgpack_serialize(variables))


def export_saved_model(restored: Restored, output: epath.Path) -> None:
    import tensorflow as tf  # Heavy; only for this export.
    from jax.experimental import jax2tf

    variables = generator_variables(restored)
    spec = _image_spec(restored, None)
    module = tf.Module()
    module.variables_tree = tf.nest.map_structure(tf.Variable, variables)
    converted = jax2tf.convert(functools.partial(_translate, restored.setup.recipe),
                               polymorphic_shapes=[None, "(b, ...)", None], with_gradient=False)
    module.translate = tf.function(
        lambda images, key: converted(module.variables_tree, images, key), autograph=False,
        input_signature=[tf.TensorSpec(spec.shape, tf.uint8), tf.TensorSpec((2,), tf.uint32)])
    tmp = output / "saved_model.tmp"
    tf.saved_model.save(module, str(tmp))
    final = output / "saved_model"
    if final.exists():
        final.rmtree()
    tmp.rename(final)


def export(restored: Restored, output_dir: str) -> epath.Path:
    output = epath.Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    export_stablehlo(restored, output)
    export_saved_model(restored, output)
    return output


def load_stablehlo(output_dir: str):
    """(call(images, key) -> uint8 images) from a StableHLO export."""
    output = epath.Path(output_dir)
    exported = jax.export.deserialize(bytearray((output / "generator.stablehlo").read_bytes()))
    variables = serialization.msgpack_restore((output / "generator_variables.msgpack")
                                              .read_bytes())
    return lambda images, key: np.asarray(exported.call(variables, images, key))

