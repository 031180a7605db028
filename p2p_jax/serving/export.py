"""`--mode=export`: the generator for serving, in the formats `export.formats` names.

The first three take images (batch, H, W, C) in the data's pixel type (uint8 photos; uint16
or float32 scientific data, `dataset.input_dtype`) at the training crop size
(`dataset.image_size`; pad or tile other sizes; label-map models take uint8 class ids, and the
instance-boundary map as a second channel) and return images in the targets' type
(`dataset.output_dtype`), the value mapping of config.json applied both ways, batch
polymorphic:

  OUT/saved_model/      tf.saved_model.load(...).translate(images, key)
  OUT/generator.stablehlo + OUT/generator_variables.msgpack
      jax.export.deserialize(...).call(variables, images, key)
  OUT/generator.onnx    onnxruntime.InferenceSession(...).run(None, {"images": images})

The SavedModel and StableHLO take a uint32[2] PRNG key too (dropout and per-image
normalisation follow the trained model's test-time behaviour, as `--mode=predict`). ONNX has no
counterpart of key-driven dropout: generator.onnx runs without it (equal to --mode=predict with
--config.model.dropout=0), in float32 (ONNX Runtime's CPU convolutions have no bfloat16).

  OUT/generator.pth     the state_dict of the reference's (or pix2pixHD's) generator definition,
                        for `net.load_state_dict(torch.load(...))`; OUT/generator_torch.json says
                        which definition and arguments, as a line of Python to build it
  OUT/generator.safetensors   the same tensors and key names, for
                        `net.load_state_dict(safetensors.torch.load_file(...))`
  OUT/README.md         the model card: what the model is, how it was trained, its latest
                        eval metrics and contact sheet, how to run it (`model_card`)

The generator is exported with XLA's own convolutions (`model.conv_impl=auto` means "xla"
here), so a program written on a CPU host carries no CPU reformulations into the GPU/TPU
server that loads it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging as py_logging
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath
from flax import serialization

from p2p_jax import fileio
from p2p_jax.config.sizes import image_hw
from p2p_jax.interop import reference_layout, safetensors_files, torch_files, torch_models
from p2p_jax.models import generation
from p2p_jax.models.generation import Generator, GeneratorVariables, TrainedGenerator
from p2p_jax.models.layers import final_channels
from p2p_jax.serving import model_card


def portable_impl(config) -> str:
    """The convolution implementation an export is built with: XLA's, unless the config
    asks for the CPU forms explicitly."""
    return "cpu" if config.model.conv_impl == "cpu" else "xla"


def _translate(generator: Generator, variables: dict, images, key):
    """Generator application on explicit variables (what both exports contain); image i of the
    batch draws from fold_in(key, i), as the i-th file of `--mode=predict`. Label-map models
    take class ids, and with instance maps the boundary map as a second channel."""
    keys = generation.image_keys(key, jnp.arange(images.shape[0], dtype=jnp.uint32))
    return generation.to_data(generation.generate(
        generator, _as_variables(variables), _split_inputs(generator, images), keys),
        generator.output_values)


def _as_variables(variables: dict) -> GeneratorVariables:
    return GeneratorVariables(variables["params"], variables["batch_stats"])


def _split_inputs(generator: Generator, images) -> dict:
    """The exports' one input array as the generator's inputs: with instance maps, class ids
    and the boundary map are its two channels."""
    return ({"A": images[..., :1], "E": images[..., 1:]} if generator.instance_maps
            else {"A": images})


def generator_variables(trained: TrainedGenerator) -> dict:
    """{"params", "batch_stats"} on the host: what generator_variables.msgpack holds."""
    variables = trained.variables
    return jax.device_get({"params": variables.params, "batch_stats": variables.batch_stats})


def _image_spec(trained: TrainedGenerator, batch) -> jax.ShapeDtypeStruct:
    dataset = trained.config.dataset
    height, width = image_hw(dataset.image_size)
    channels = dataset.input_channels + int(dataset.instance_maps)
    return jax.ShapeDtypeStruct((batch, height, width, channels),
                                trained.generator.input_values.dtype)


def export_stablehlo(trained: TrainedGenerator, output: epath.Path) -> None:
    variables = generator_variables(trained)
    (batch,) = jax.export.symbolic_shape("b")
    exported = jax.export.export(jax.jit(functools.partial(_translate, trained.generator)))(
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables),
        _image_spec(trained, batch), jax.ShapeDtypeStruct((2,), jnp.uint32))
    fileio.write_bytes(output / "generator.stablehlo", exported.serialize())
    fileio.write_bytes(output / "generator_variables.msgpack",
                  serialization.msgpack_serialize(variables))


def export_saved_model(trained: TrainedGenerator, output: epath.Path) -> None:
    import tensorflow as tf  # Heavy; only for this export.
    from jax.experimental import jax2tf

    variables = generator_variables(trained)
    spec = _image_spec(trained, None)
    module = tf.Module()
    module.variables_tree = tf.nest.map_structure(tf.Variable, variables)
    converted = jax2tf.convert(functools.partial(_translate, trained.generator),
                               polymorphic_shapes=[None, "(b, ...)", None], with_gradient=False)
    module.translate = tf.function(
        lambda images, key: converted(module.variables_tree, images, key), autograph=False,
        input_signature=[tf.TensorSpec(spec.shape, tf.as_dtype(spec.dtype)),
                         tf.TensorSpec((2,), tf.uint32)])
    tmp = output / "saved_model.tmp"
    tf.saved_model.save(module, str(tmp))
    final = output / "saved_model"
    if final.exists():
        final.rmtree()
    tmp.rename(final)


def _onnx_generator(generator: Generator) -> Generator:
    """The generator as ONNX can hold it: float32, and no dropout."""
    network = generator.network.clone(dtype=jnp.float32)
    if getattr(network, "dropout_rate", 0.0) > 0 and not generator.eval_mode:
        logging.info("generator.onnx runs without dropout (ONNX has no key-driven dropout): it "
                     "equals --mode=predict with --config.model.dropout=0")
        network = network.clone(dropout_rate=0.0)
    return dataclasses.replace(generator, network=network)


def export_onnx(trained: TrainedGenerator, output: epath.Path) -> None:
    """Through jax2onnx, from the jaxpr of the same generation function as the others."""
    # jax2onnx announces each optional plugin (Equinox, dm_pix examples) it cannot load.
    py_logging.getLogger("jax2onnx").setLevel(py_logging.ERROR)
    from jax2onnx import to_onnx

    generator = _onnx_generator(trained.generator)
    variables = generator_variables(trained)

    # A batch-normalised generator without eval_mode normalises each image by its own
    # statistics: one image per run there (jax2onnx's batch norm has no batching rule).
    per_image = not generator.eval_mode and bool(jax.tree.leaves(variables["batch_stats"]))

    def translate(images):
        inputs = _split_inputs(generator, images)
        if per_image:
            x = generation.encode_input(generator, inputs)
            out = generation.apply_network(generator.network, variables["params"],
                                           variables["batch_stats"], x, True)[0]
        else:
            out = generation.generate(generator, _as_variables(variables), inputs, None)
        return generation.to_data(out, generator.output_values)

    spec = _image_spec(trained, 1 if per_image else "batch")
    if per_image:  # Traced here, so the converter sees the statistics' reductions, not its
        # inference-mode stand-in for flax's BatchNorm.
        closed = jax.make_jaxpr(translate)(spec)
        translate = lambda images: jax.core.eval_jaxpr(closed.jaxpr, closed.consts, images)[0]  # noqa: E731
    model = to_onnx(translate, [spec], model_name="p2p_jax_generator", opset=18,
                    input_names=["images"], output_names=["translated"])
    fileio.write_bytes(output / "generator.onnx", model.SerializeToString())


def export_torch(trained: TrainedGenerator, output: epath.Path) -> bool:
    """generator.pth and generator.safetensors (the same tensors and key names) in the PyTorch
    definition's layout; False (and a note) for models that have none."""
    config = trained.config
    try:
        layout = reference_layout.generator_layout(config)
    except reference_layout.LayoutError as e:
        logging.info("no generator.pth: %s", e)
        return False
    variables = generator_variables(trained)
    state_dict = torch_models.to_state_dict(variables["params"], variables["batch_stats"],
                                            layout)
    definition = torch_definition(config)
    fileio.write_bytes(output / "generator.pth", torch_files.state_dict_bytes(state_dict))
    fileio.write_bytes(output / "generator.safetensors", safetensors_files.state_dict_bytes(
        state_dict, {"p2p_jax_step": str(trained.step), "definition": json.dumps(definition)}))
    fileio.write_text(output / "generator_torch.json", json.dumps(definition, indent=2))
    return True


def torch_definition(config) -> dict:
    """Which PyTorch definition generator.pth is for: the call with its arguments as its
    repository's `models/networks.py` takes them, and that call as a line of Python."""
    model, dataset = config.model, config.dataset
    input_nc = dataset.label_nc or dataset.input_channels  # One-hot classes, or image channels.
    input_nc += int(dataset.instance_maps)
    output_nc = final_channels(dataset.output_channels, model.chroma)
    if model.generator in ("global", "local"):
        arguments = {"input_nc": input_nc, "output_nc": output_nc,
                     "ngf": model.ngf, "netG": model.generator,
                     "n_downsample_global": model.n_downsample_global,
                     "n_blocks_global": model.n_blocks_global,
                     "n_local_enhancers": model.n_local_enhancers,
                     "n_blocks_local": model.n_blocks_local, "norm": model.norm}
        repository, call = "NVIDIA/pix2pixHD", "networks.define_G"
    elif model.generator == "unet":  # define_G names only 7 and 8 levels (unet_128, unet_256).
        repository, call = "junyanz/pytorch-CycleGAN-and-pix2pix", "networks.UnetGenerator"
        arguments = {"input_nc": input_nc, "output_nc": output_nc,
                     "num_downs": model.num_downs, "ngf": model.ngf,
                     "norm_layer": f"networks.get_norm_layer({model.norm!r})",
                     "use_dropout": model.dropout > 0}
    else:
        repository, call = "junyanz/pytorch-CycleGAN-and-pix2pix", "networks.define_G"
        arguments = {"input_nc": input_nc, "output_nc": output_nc,
                     "ngf": model.ngf, "netG": model.generator, "norm": model.norm,
                     "use_dropout": model.dropout > 0}
    written = ", ".join(f"{name}={value if name == 'norm_layer' else repr(value)}"
                        for name, value in arguments.items())
    definition = {"repository": repository, "call": call, "arguments": arguments,
                  "python": f"from models import networks; net = {call}({written})"}
    if model.residual:  # The PyTorch module computes the correction alone.
        definition["output"] = "(input + net(input)).clamp(-1, 1)  # model.residual"
    if model.chroma != "none":  # The PyTorch module computes the two chroma channels alone.
        definition["output"] = (f"{model.chroma}_to_rgb(input, net(input))  # model.chroma: "
                                "the gray input's lightness in the predicted chroma, as "
                                "p2p_jax/models/color.py")
    return definition


def export(trained: TrainedGenerator, output_dir: str, workdir: str) -> epath.Path:
    """The `export.formats` of the generator, its config.json and its model card."""
    output = epath.Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    formats = trained.config.export.formats
    written = []
    writers = (("stablehlo", export_stablehlo, ["generator.stablehlo"]),
               ("saved_model", export_saved_model, ["saved_model/"]),
               ("onnx", export_onnx, ["generator.onnx"]),
               ("torch", export_torch,
                ["generator.pth", "generator.safetensors", "generator_torch.json"]))
    for name, write, files in writers:
        if name in formats:
            start = time.perf_counter()
            if write(trained, output) is not False:  # export_torch: False for no layout.
                written += files
                logging.info("%s written in %.1f s", ", ".join(files),
                             time.perf_counter() - start)
    fileio.write_text(output / "config.json", trained.config.to_json_best_effort(indent=2))
    written.append("config.json")
    model_card.write(trained, workdir, output, written,
                     torch_definition(trained.config) if "generator.pth" in written else None)
    return output


def load_stablehlo(output_dir: str):
    """(call(images, key) -> images in the targets' type) from a StableHLO export."""
    output = epath.Path(output_dir)
    exported = jax.export.deserialize(bytearray((output / "generator.stablehlo").read_bytes()))
    variables = serialization.msgpack_restore((output / "generator_variables.msgpack")
                                              .read_bytes())
    return lambda images, key: np.asarray(exported.call(variables, images, key))

