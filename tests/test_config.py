"""Every config loads and validates; mistakes fail in one clear line."""

import importlib
import pathlib
import re
import subprocess
import sys

import pytest

from p2p_jax import parallel
from p2p_jax.config.checks import validate_config
from p2p_jax.config.saved import saved_config
from p2p_jax.errors import ConfigError, UserError

CONFIG_NAMES = sorted(p.stem for p in pathlib.Path("configs").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_config_loads_and_validates(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    validate_config(config)
    with pytest.raises(AttributeError, match="does not exist"):
        config.modle = None


def test_step_counts_follow_num_train_steps(tiny_config):
    tiny_config.num_train_steps = 1000
    assert tiny_config.optimizer.constant_steps == 500
    assert tiny_config.optimizer.decay_steps == 500


@pytest.mark.parametrize("key,value,message", [
    ("dataset.image_size", 48, "dataset.image_size=48 is not a multiple of 32"),
    ("model.generator", "unet_512", "model.generator='unet_512' is not one of"),
    ("model.norm", "group", "model.norm='group' is not one of"),
    ("dtype", "float16", "dtype='float16' is not one of"),
    ("dataset.load_size", 16, "dataset.load_size=16 is smaller than dataset.image_size=32"),
    ("batch_size", 0, "batch_size=0 must be positive"),
    ("model.dropout", 1.0, "model.dropout=1.0 must be in"),
    ("seed", 2**64, "seed=18446744073709551616 must fit in 64 bits"),
    ("eval.batch_size", 10**6, "eval.batch_size=1000000 is over 4096"),
    ("batch_size", 2**20, "batch_size=1048576 is over 65536"),
    ("serve.max_upload_mb", 0, "serve.max_upload_mb=0 must be positive"),
    ("eval.sheet_examples", 0, "eval.sheet_examples=0 must be positive"),
    ("mesh.memory_limit_gb", -1.0, "mesh.memory_limit_gb=-1.0 must be >= 0"),
    ("serve.queue_size", 10**9, "serve.queue_size=1000000000 is over 10000"),
])
def test_bad_values_fail_with_the_key_named(tiny_config, key, value, message):
    section, _, field = key.rpartition(".")
    setattr(tiny_config[section] if section else tiny_config, field, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate_config(tiny_config)


def test_batch_must_divide_devices(devices):
    with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices"):
        parallel.check_batch_size(12, parallel.create_mesh(devices=devices))
    parallel.check_batch_size(16, parallel.create_mesh(devices=devices))


def test_command_line_typo_fails_before_training(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "p2p_jax.main", "--config=configs/tiny.py",
         f"--workdir={tmp_path}", "--config.model.generatr=unet"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "generatr" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("text,message", [
    ("[1, 2]", "holds a JSON list, not the object of a run's config"),
    ('{"model": {"ngf": 8', "is unreadable (JSONDecodeError"),
    ("[" * 100_000 + "]" * 100_000, "is unreadable (RecursionError"),
    ('{"seed": null}', "seed is null; it takes a int"),
    ('{"model": 3}', "model must be an object"),
    ('{"seed": 18446744073709551616}', "must fit in 64 bits"),
    ('{"model": {"norm": "group"}}', "model.norm='group' is not one of"),
    ('{"batch_size": "eight"}', "batch_size"),
])
def test_a_damaged_saved_config_is_one_line_naming_it(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(UserError, match=re.escape(message)) as error:
        saved_config(str(tmp_path))
    assert str(tmp_path / "config.json") in str(error.value) and "\n" not in str(error.value)


def test_with_a_config_given_a_damaged_saved_config_leaves_channels_to_the_data(tmp_path,
                                                                                tiny_config):
    from p2p_jax.data import pipeline

    for text in ("[1, 2]", '{"dataset": {"input_channels": null}}', "{"):
        (tmp_path / "config.json").write_text(text)
        resolved = pipeline.resolve_data(tiny_config, str(tmp_path))
        assert (resolved.dataset.input_channels, resolved.dataset.output_channels) == (3, 3)


def test_config_mode_lists_every_key_with_its_choices_and_comment(tiny_config):
    import subprocess
    import sys

    from p2p_jax.config import describe

    listing = describe.describe(tiny_config).splitlines()
    keys = [line.split(" = ")[0] for line in listing]
    flat = []

    def walk(section, prefix):
        for name in section:
            if isinstance(section[name], type(tiny_config)):
                walk(section[name], f"{prefix}{name}.")
            else:
                flat.append(f"{prefix}{name}")

    walk(tiny_config, "")
    assert keys == flat
    line = dict(zip(keys, listing, strict=True))
    assert line["batch_size"].startswith("batch_size = 8 ")
    assert "# Global: split over every device of every process." in line["batch_size"]
    assert "one of unet_128 | unet_256 | unet |" in line["model.generator"]
    assert "one of inception | fcn" in line["eval.evaluators"]
    assert "Requests waiting" in line["serve.queue_size"]
    printed = subprocess.run(
        [sys.executable, "-m", "p2p_jax.main", "--config=configs/tiny.py", "--mode=config",
         "--config.model.ngf=12"], capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    assert "model.ngf = 12" in printed.stdout and "dataset.source = 'synthetic_scenes'" in (
        printed.stdout)


@pytest.mark.parametrize("changes, running", [
    ({}, True),  # Batch norm over 4 images: tested with those statistics.
    ({"batch_size": 1}, False),  # The reference's batch 1: each image its own, as it tests.
    ({"model.norm": "instance"}, False),  # Nothing to keep: the reference's test, dropout on.
    ({"model.eval_mode": False}, False),
    ({"batch_size": 1, "model.eval_mode": True}, True),
])
def test_test_time_normalisation_follows_training_unless_the_config_says(changes, running,
                                                                         tmp_path):
    from configs import tiny
    from p2p_jax.models.generation import Generator

    config = tiny.get_config()
    assert config.model.eval_mode is None and config.model.norm == "batch"
    config.update_from_flattened_dict(changes)
    assert Generator.from_config(config).eval_mode is running
    (tmp_path / "config.json").write_text(config.to_json_best_effort())
    assert Generator.from_config(saved_config(str(tmp_path))).eval_mode is running


def test_reference_variant_tests_as_the_reference_does():
    from configs import default
    from p2p_jax.models.generation import tests_with_running_statistics

    assert default.get_config().batch_size > 1
    assert tests_with_running_statistics(default.get_config())
    assert not tests_with_running_statistics(default.get_config("reference"))


@pytest.mark.parametrize("changes, message", [
    ({"model.generator": "global"}, "model.residual is for the U-Net and ResNet generators"),
    ({"dataset.label_nc": 35}, "a label map .dataset.label_nc. is not an image"),
])
def test_residual_output_refuses_what_it_cannot_add_to(tiny_config, changes, message):
    tiny_config.model.residual = True
    validate_config(tiny_config)
    tiny_config.update_from_flattened_dict(changes)
    with pytest.raises(ConfigError, match=message):
        validate_config(tiny_config)
