"""Models users already have: the reference's and pix2pixHD's state_dicts (written by the real
PyTorch modules: tests/data/make_torch_models.py) give our networks the same outputs, the
architecture is read off the file and a mismatch is one line naming the config key, and our
weights go back out in the same layout, key for key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from p2p_jax.interop import reference_layout, safetensors_files, torch_files, torch_models
from p2p_jax.models.build import build_discriminator, build_generator

FIXTURES = "tests/data/torch_models"
OUTPUTS = np.load(f"{FIXTURES}/outputs.npz")


def config_for(**keys):
    config = default.get_config()
    for key, value in keys.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


# fixture -> (config keys, generator or discriminator), as make_torch_models.py builds them.
CASES = {
    "unet_batch_dropout": (dict(**{"model.generator": "unet", "model.num_downs": 6,
                                   "model.ngf": 4, "model.norm": "batch", "model.dropout": 0.5})),
    "unet_instance": dict(**{"model.generator": "unet", "model.num_downs": 6, "model.ngf": 4,
                             "model.norm": "instance", "model.dropout": 0.0}),
    "unet_none": dict(**{"model.generator": "unet", "model.num_downs": 5, "model.ngf": 4,
                         "model.norm": "none", "model.dropout": 0.0}),
    "resnet_batch_dropout": dict(**{"model.generator": "resnet_6blocks", "model.ngf": 4,
                                    "model.norm": "batch", "model.dropout": 0.5}),
    "resnet_instance": dict(**{"model.generator": "resnet_9blocks", "model.ngf": 4,
                               "model.norm": "instance", "model.dropout": 0.0}),
    "resnet_none_dropout": dict(**{"model.generator": "resnet_6blocks", "model.ngf": 4,
                                   "model.norm": "none", "model.dropout": 0.5}),
    "hd_global": dict(**{"model.generator": "global", "model.ngf": 4, "model.norm": "instance",
                         "model.n_downsample_global": 3, "model.n_blocks_global": 2,
                         "dataset.label_nc": 5, "dataset.instance_maps": True}),
    "hd_local": dict(**{"model.generator": "local", "model.ngf": 2, "model.norm": "instance",
                        "model.n_downsample_global": 2, "model.n_blocks_global": 2,
                        "model.n_local_enhancers": 1, "model.n_blocks_local": 1,
                        "dataset.label_nc": 5, "dataset.instance_maps": True}),
}
DISCRIMINATORS = {
    "d_basic_batch": dict(**{"model.discriminator": "basic", "model.ndf": 4,
                             "model.norm": "batch"}),
    "hd_multiscale_d": dict(**{"model.discriminator": "multiscale", "model.ndf": 4,
                               "model.norm": "instance", "model.num_d": 2,
                               "model.n_layers_d": 2}),
}


def imported(module, layout, tensors, x):
    shapes = jax.eval_shape(lambda: module.init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, jnp.zeros(x.shape),
        train=False))
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    return torch_models.to_variables(tensors, layout, zeros["params"],
                                     zeros.get("batch_stats", {}), "file.pth", "hint")


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_and_pix2pixhd_generators_give_pytorchs_outputs(name):
    path = f"{FIXTURES}/{name}.pth"
    tensors = torch_models.read_state_dict(path)
    inferred = torch_models.infer_generator(tensors, path)
    config = config_for(**CASES[name])
    torch_models.check_config(inferred, config, path)
    x = OUTPUTS[f"{name}/input"]
    out_channels = OUTPUTS[f"{name}/output"].shape[-1]
    assert inferred["channels"] == (x.shape[-1], out_channels)
    module = build_generator(config, out_channels, "xla")
    params, stats = imported(module, reference_layout.generator_layout(config), tensors, x)
    got = module.apply({"params": params, "batch_stats": stats}, jnp.asarray(x), train=False)
    np.testing.assert_allclose(np.asarray(got), OUTPUTS[f"{name}/output"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminators_give_pytorchs_outputs(name):
    tensors = torch_models.read_state_dict(f"{FIXTURES}/{name}.pth")
    config = config_for(**DISCRIMINATORS[name])
    x = OUTPUTS[f"{name}/input"]
    module = build_discriminator(config, "xla")
    params, stats = imported(module, reference_layout.discriminator_layout(config), tensors, x)
    got = module.apply({"params": params, "batch_stats": stats}, jnp.asarray(x), train=False)
    if isinstance(got, list):  # Multi-scale: every layer of every scale, finest first.
        for i, scale in enumerate(got):
            for j, feature in enumerate(scale):
                np.testing.assert_allclose(np.asarray(feature), OUTPUTS[f"{name}/output_{i}_{j}"],
                                           atol=1e-4, rtol=0)
    else:
        np.testing.assert_allclose(np.asarray(got), OUTPUTS[f"{name}/output"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["unet_batch_dropout", "resnet_none_dropout", "hd_local"])
def test_our_weights_go_back_out_key_for_key(name, tmp_path):
    path = f"{FIXTURES}/{name}.pth"
    original = torch_files.load_state_dict(path)
    original = {k.removeprefix("module."): v for k, v in original.items()}
    config = config_for(**CASES[name])
    x = OUTPUTS[f"{name}/input"]
    module = build_generator(config, OUTPUTS[f"{name}/output"].shape[-1], "xla")
    layout = reference_layout.generator_layout(config)
    params, stats = imported(module, layout, torch_models.read_state_dict(path), x)
    written = torch_models.to_state_dict(params, stats, layout)
    (tmp_path / "g.pth").write_bytes(torch_files.state_dict_bytes(written))
    again = torch_files.load_state_dict(tmp_path / "g.pth")
    assert list(again) == [k for k in original if k in again]  # PyTorch's module order.
    assert set(again) == set(original)
    for key, value in original.items():
        if key.endswith("num_batches_tracked"):
            assert again[key].dtype == np.int64 and again[key].shape == ()
        else:
            np.testing.assert_array_equal(again[key], value, err_msg=key)


def test_old_instance_norm_statistics_and_dataparallel_prefixes_are_dropped(tmp_path):
    tensors = dict(torch_files.load_state_dict(f"{FIXTURES}/unet_instance.pth"))
    assert all(k.startswith("module.") for k in tensors)
    # PyTorch < 0.4 saved running statistics for affine-free instance norms.
    tensors["module.model.model.1.model.2.running_mean"] = np.zeros(8, np.float32)
    tensors["module.model.model.1.model.2.running_var"] = np.ones(8, np.float32)
    (tmp_path / "old.pth").write_bytes(torch_files.state_dict_bytes(tensors))
    read = torch_models.read_state_dict(tmp_path / "old.pth")
    assert not any("running" in k or k.startswith("module.") for k in read)
    assert torch_models.infer_generator(read, "old.pth")["model.norm"] == "instance"


@pytest.mark.parametrize("name,keys,message", [
    ("unet_batch_dropout", {"model.norm": "instance"},
     "model.norm=instance does not match the file (the file has running_mean); use "
     "--config.model.norm=batch"),
    ("unet_batch_dropout", {"model.generator": "unet_256"},
     "model.num_downs=8 does not match the file (the file has 6 levels); use "
     "--config.model.generator=unet --config.model.num_downs=6"),
    ("unet_batch_dropout", {"model.generator": "resnet_9blocks"},
     "model.generator=resnet_9blocks does not match the file (the file has a U-Net); use "
     "--config.model.generator=unet"),
    ("resnet_instance", {"model.generator": "resnet_6blocks"},
     "use --config.model.generator=resnet_9blocks"),
    ("resnet_batch_dropout", {"model.dropout": 0.0},
     "model.dropout=0.0 does not match the file (the file has dropout in its blocks); use "
     "--config.model.dropout=0.5"),
    ("resnet_instance", {"model.ngf": 8}, "model.ngf=8 does not match the file (the file has 4)"),
    ("hd_global", {"model.generator": "resnet_9blocks"}, "use --config.model.generator=global"),
    ("hd_global", {"model.n_blocks_global": 9}, "use --config.model.n_blocks_global=2"),
    ("hd_local", {"model.generator": "global"}, "use --config.model.generator=local"),
])
def test_a_file_that_does_not_fit_the_config_names_the_key(name, keys, message):
    path = f"{FIXTURES}/{name}.pth"
    tensors = torch_models.read_state_dict(path)
    config = config_for(**{**CASES[name], **keys})
    with pytest.raises(torch_models.ModelFileError) as raised:
        torch_models.check_config(torch_models.infer_generator(tensors, path), config, path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_first_differing_key_is_named_with_both_shapes():
    path = f"{FIXTURES}/d_basic_batch.pth"
    config = config_for(**{**DISCRIMINATORS["d_basic_batch"], "model.ndf": 8})
    module = build_discriminator(config, "xla")
    with pytest.raises(torch_models.ModelFileError, match=r"model\.0\.weight has shape "
                       r"\(4, 6, 4, 4\) in the file, this config's model needs \(8, 6, 4, 4\)"):
        imported(module, reference_layout.discriminator_layout(config),
                 torch_models.read_state_dict(path), OUTPUTS["d_basic_batch/input"])


def test_channels_come_from_the_file_and_label_maps_must_agree():
    from p2p_jax.models.generation import model_input_channels
    from p2p_jax.train import model_import

    config = config_for(**CASES["unet_none"])
    resolved = model_import._with_channels(config, (1, 3), "g.pth")
    assert (resolved.dataset.input_channels, resolved.dataset.output_channels) == (1, 3)
    labels = config_for(**{**CASES["hd_global"], "dataset.label_nc": 35})
    with pytest.raises(torch_models.ModelFileError, match="takes 6 input channels, this config "
                       "36 .dataset.label_nc=35 one-hot classes"):
        model_import._with_channels(labels, (6, 3), "g.pth")
    assert model_input_channels(
        model_import._with_channels(config_for(**CASES["hd_global"]), (6, 3), "g").dataset) == 6


@pytest.mark.slow
def test_import_gives_a_checkpoint_that_predict_export_and_fine_tuning_accept(tmp_path):
    """The reference's U-Net (batch norm, dropout) into a workdir: its config travels with it,
    predict (eval mode) equals the network on the file's weights, the PyTorch export gives the
    file's tensors back bit for bit, ONNX Runtime agrees with predict, and training continues."""
    import onnxruntime

    from configs import tiny
    from p2p_jax import checkpointing
    from p2p_jax.config.saved import saved_config
    from p2p_jax.data import images
    from p2p_jax.errors import UserError
    from p2p_jax.serving import export, predict, restore
    from p2p_jax.train import loop, model_import

    config = tiny.get_config()
    for key, value in {**CASES["unet_batch_dropout"], "model.eval_mode": True,
                       "dataset.image_size": 64, "dataset.load_size": 72, "batch_size": 8,
                       "eval.batch_size": 8,
                       "num_train_steps": 2, "sample_every_steps": 2, "eval_every_steps": 2,
                       "checkpoint_every_steps": 2, "export.formats": ("onnx", "torch")}.items():
        section, _, leaf = key.rpartition(".")
        (config[section] if section else config)[leaf] = value
    fixture = f"{FIXTURES}/unet_batch_dropout.pth"
    workdir = str(tmp_path / "imported")
    model_import.import_models(config, workdir, fixture)
    with pytest.raises(UserError, match="already holds checkpoints"):
        model_import.import_models(config, workdir, fixture)

    saved = saved_config(workdir)  # No --config: the run's own.
    assert (saved.dataset.input_channels, saved.model.generator) == (3, "unet")
    trained = restore.restore(saved, workdir)
    assert trained.step == 0
    photos = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    for i, photo in enumerate(photos):
        images.write(tmp_path / "in" / f"{i}.png", photo)
    predict.predict(trained, predict.list_inputs(str(tmp_path / "in"), str(tmp_path / "out")))
    predicted = np.stack([images.read(str(tmp_path / "out" / f"{i}.png")) for i in range(2)])
    module = build_generator(saved, 3, "xla")
    params, stats = imported(module, reference_layout.generator_layout(saved),
                             torch_models.read_state_dict(fixture), photos)
    direct = module.apply({"params": params, "batch_stats": stats},
                          jnp.asarray(photos, jnp.float32) / 127.5 - 1, train=False)
    direct = np.clip(np.round((np.asarray(direct) + 1) * 127.5), 0, 255)
    assert np.abs(predicted.astype(int) - direct).max() <= 1

    out = export.export(restore.restore(saved, workdir, conv_impl="xla"), str(tmp_path / "x"),
                        workdir)
    again = torch_files.load_state_dict(out / "generator.pth")
    for key, value in torch_files.load_state_dict(fixture).items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(again[key], value, err_msg=key)
    # generator.safetensors: the .pth's keys and tensors; imported back, predict's outputs.
    shared = safetensors_files.load_state_dict(out / "generator.safetensors")
    assert shared.keys() == again.keys()
    for key, value in again.items():
        np.testing.assert_array_equal(shared[key], value, err_msg=key)
    model_import.import_models(config, str(tmp_path / "reimported"),
                               str(out / "generator.safetensors"))
    predict.predict(restore.restore(saved_config(str(tmp_path / "reimported")),
                                    str(tmp_path / "reimported")),
                    predict.list_inputs(str(tmp_path / "in"), str(tmp_path / "again")))
    for i in range(2):
        np.testing.assert_array_equal(images.read(str(tmp_path / "again" / f"{i}.png")),
                                      predicted[i])
    session = onnxruntime.InferenceSession(str(out / "generator.onnx"))
    assert session.get_inputs()[0].shape[0] == "batch"  # Dynamic batch.
    served = session.run(None, {"images": photos})[0]
    assert served.dtype == np.uint8 and np.abs(served.astype(int) - predicted).max() <= 1

    # Without eval_mode each image is normalised by its own statistics: ONNX takes one at a
    # time, and runs without dropout (as predict with model.dropout=0).
    per_image = saved.copy_and_resolve_references()
    per_image.model.eval_mode, per_image.model.dropout = False, 0.0
    out = export.export(restore.restore(per_image, workdir, conv_impl="xla"), str(tmp_path / "y"),
                        workdir)
    predict.predict(restore.restore(per_image, workdir),
                    predict.list_inputs(str(tmp_path / "in"), str(tmp_path / "out1")))
    session = onnxruntime.InferenceSession(str(out / "generator.onnx"))
    assert session.get_inputs()[0].shape[0] == 1
    for i, photo in enumerate(photos):
        served = session.run(None, {"images": photo[None]})[0][0]
        want = images.read(str(tmp_path / "out1" / f"{i}.png"))
        assert np.abs(served.astype(int) - want).max() <= 1

    loop.train_and_evaluate(saved, workdir)  # Fine-tuning: plain training on the workdir.
    trained = checkpointing.load_train_state(workdir)
    assert int(trained["step"]) == 2
    assert not np.array_equal(trained["g_params"]["down_0"]["kernel"],
                              params["down_0"]["kernel"])


# The parameters of the PyTorch definitions (their repositories' models/networks.py).
TORCH_SIGNATURES = {
    ("junyanz/pytorch-CycleGAN-and-pix2pix", "networks.define_G"): (
        "input_nc", "output_nc", "ngf", "netG", "norm", "use_dropout", "init_type",
        "init_gain", "gpu_ids"),
    ("junyanz/pytorch-CycleGAN-and-pix2pix", "networks.UnetGenerator"): (
        "input_nc", "output_nc", "num_downs", "ngf", "norm_layer", "use_dropout"),
    ("NVIDIA/pix2pixHD", "networks.define_G"): (
        "input_nc", "output_nc", "ngf", "netG", "n_downsample_global", "n_blocks_global",
        "n_local_enhancers", "n_blocks_local", "norm", "gpu_ids"),
}


@pytest.mark.parametrize("generator,netg", [("unet", None), ("unet_256", "unet_256"),
                                            ("resnet_9blocks", "resnet_9blocks"),
                                            ("local", "local")])
def test_generator_torch_json_is_a_call_pytorch_users_can_make(generator, netg):
    """generator_torch.json names a definition that exists with arguments it takes (define_G
    has no `unet` of any depth: UnetGenerator itself, with num_downs); its Python line makes
    that very call."""
    import ast

    from p2p_jax.serving import export

    config = default.get_config()
    config.model.generator = generator
    config.dataset.input_channels, config.dataset.output_channels = 3, 3
    definition = export.torch_definition(config)
    allowed = TORCH_SIGNATURES[definition["repository"], definition["call"]]
    assert set(definition["arguments"]) <= set(allowed)
    assert definition["arguments"].get("netG") == netg
    if generator == "unet":
        assert definition["arguments"]["num_downs"] == config.model.num_downs
    statement = ast.parse(definition["python"]).body[-1]
    call = statement.value
    assert ast.unparse(call.func) == definition["call"]
    assert [k.arg for k in call.keywords] == list(definition["arguments"])
