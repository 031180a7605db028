"""`--mode=export`: the generator for serving, as a TF SavedModel and as StableHLO.

Both take uint8 images (batch, S, S, C) with S the training crop size (`dataset.image_size`;
pad or tile other sizes) and a uint32[2] PRNG key (dropout and per-image normalisation follow
the trained model's test-time behaviour, as `--mode=predict`), and return uint8 images:

  OUT/saved_model/      tf.saved_model.load(...).translate(images, key)   (batch polymorphic)
  OUT/generator.stablehlo + OUT/generator_variables.msgpack
      jax.export.deserialize(...).call(variables, images, key)             (batch polymorphic)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import serialization

from p2p_jax import summaries, train
from p2p_jax.data import images
from p2p_jax.inference import Restored


def _translate(models: train.Pix2Pix, variables, images, key):
    """Generator application on explicit variables (what both exports contain); image i of the
    batch draws from fold_in(key, i), as the i-th file of `--mode=predict`."""
    keys = train.image_keys(key, jnp.arange(images.shape[0], dtype=jnp.uint32))
    return summaries.to_uint8_device(
        train.generate(models, variables["params"], variables["batch_stats"], images, keys))


def generator_variables(restored: Restored) -> dict:
    return jax.device_get({"params": restored.state.g_params,
                           "batch_stats": restored.state.g_batch_stats})


def _image_spec(restored: Restored, batch) -> jax.ShapeDtypeStruct:
    size, channels = restored.config.dataset.image_size, restored.config.dataset.input_channels
    return jax.ShapeDtypeStruct((batch, size, size, channels), jnp.uint8)


def export_stablehlo(restored: Restored, output: epath.Path) -> None:
    variables = generator_variables(restored)
    (batch,) = jax.export.symbolic_shape("b")
    exported = jax.export.export(jax.jit(functools.partial(_translate, restored.models)))(
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables),
        _image_spec(restored, batch), jax.ShapeDtypeStruct((2,), jnp.uint32))
    images.write_bytes_atomically(output / "generator.stablehlo", exported.serialize())
    images.write_bytes_atomically(output / "generator_variables.msgpack",
                  serialization.msgpack_serialize(variables))


def export_saved_model(restored: Restored, output: epath.Path) -> None:
    import tensorflow as tf  # Heavy; only for this export.
    from jax.experimental import jax2tf

    variables = generator_variables(restored)
    spec = _image_spec(restored, None)
    module = tf.Module()
    module.variables_tree = tf.nest.map_structure(tf.Variable, variables)
    converted = jax2tf.convert(functools.partial(_translate, restored.models),
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

