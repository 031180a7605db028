"""The documents' commands and links, read as a user copies them: every fenced command that runs
the product (README.md, docs/*.md) uses flags its program defines, config keys its config has
and shipped names that exist; every linked file and image exists. README stays one screen
set: at most ~200 lines."""

import importlib.util
import pathlib
import re
import shlex

import pytest

from p2p_jax.config import shipped
from p2p_jax.data import download

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# absl's own flags, which every program takes.
ABSL_FLAGS = {"verbosity", "v", "help", "helpfull", "helpshort", "logtostderr",
              "alsologtostderr", "log_dir", "only_check_args"}
# The program a command runs -> the source files that define its flags.
PROGRAMS = {"p2p_jax.main": ["p2p_jax/main.py"], "p2p_jax.benchmark": ["p2p_jax/perf/measure.py"],
            "p2p_jax.data.download": ["p2p_jax/data/download.py"],
            "p2p_jax.data.convert": ["p2p_jax/data/convert.py"],
            "p2p_jax.data.sample_photos": ["p2p_jax/data/sample_photos.py"],
            "p2p_jax.data.camvid": ["p2p_jax/data/camvid.py"]}
SCRIPTS = {"scripts/download_pix2pix_dataset.sh": ("p2p_jax.data.download", "dataset"),
           "scripts/download_pix2pix_model.sh": ("p2p_jax.data.download", "model")}


def defined_flags(program: str) -> set[str]:
    names = set(ABSL_FLAGS)
    for source in PROGRAMS[program]:
        names |= set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", (REPO / source).read_text()))
    return names


def fenced_commands(document: pathlib.Path) -> list[list[str]]:
    """Each shell command of the document's fenced blocks, continuation lines joined."""
    commands = []
    for language, block in re.findall(r"```(\w*)\n(.*?)```", document.read_text(), re.S):
        if language not in ("", "bash", "sh", "shell"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line):
                try:
                    words = shlex.split(part, comments=True)
                except ValueError:  # Prose in a listing (a folder tree), not a command.
                    assert "p2p_jax." not in part and "p2p-jax" not in part, part
                    continue
                if words:
                    commands.append(words)
    return commands


def program_of(words: list[str]) -> tuple[str | None, list[str]]:
    """(the program a command runs, its arguments), or (None, []) for other commands."""
    for i, word in enumerate(words):
        if word == "-m" and i + 1 < len(words) and words[i + 1] in PROGRAMS:
            return words[i + 1], words[i + 2:]
        if word.endswith("p2p-jax"):
            return "p2p_jax.main", words[i + 1:]
        if word in SCRIPTS:
            program, kind = SCRIPTS[word]
            return program, [f"--{kind}={words[i + 1]}", *words[i + 2:]]
    return None, []


def load_config(argument: str):
    path, _, variant = shipped.resolve(argument).partition(":")
    spec = importlib.util.spec_from_file_location("config_under_test", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def has_key(config, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node:
            return False
        node = node[part]
    return True


def product_commands():
    found = []
    for document in DOCUMENTS:
        for words in fenced_commands(document):
            program, arguments = program_of(words)
            if program:
                found.append(pytest.param(program, arguments,
                                          id=f"{document.name}:{' '.join(words)[:60]}"))
    return found


def test_the_documents_run_the_product():
    assert len(product_commands()) >= 20


@pytest.mark.parametrize("program,arguments", product_commands())
def test_a_documented_command_uses_real_flags_keys_and_names(program, arguments):
    flags = defined_flags(program)
    values = {}
    for argument in arguments:
        if not argument.startswith("--"):
            continue  # A subcommand (`benchmark memory`) or a positional.
        name, _, value = argument[2:].partition("=")
        if name.startswith("config."):
            continue
        assert name in flags or (name.startswith("no") and name[2:] in flags), (
            f"--{name} is not a flag of {program}")
        values[name] = value
    if program == "p2p_jax.data.download":
        tables = {"dataset": [*download.DATASETS, "cityscapes"], "model": download.MODELS,
                  "weights": download.WEIGHTS}
        for kind, names in tables.items():
            if kind in values:
                assert values[kind] in names, f"--{kind}={values[kind]} is not one we fetch"
    if "mode" in values:  # main.py read, not imported: its flags would clash with the others'.
        modes = re.search(r"^MODES = \(([^)]*)\)", (REPO / "p2p_jax/main.py").read_text(), re.M)
        assert f'"{values["mode"]}"' in modes.group(1)
    overrides = [a[len("--config."):].partition("=")[0] for a in arguments
                 if a.startswith("--config.")]
    config_argument = values.get("config") or (
        "configs/facades.py" if program == "p2p_jax.benchmark" else None)
    if config_argument is None:
        assert not overrides, "--config.KEY overrides need --config"
        return
    config = load_config(config_argument)
    for key in overrides:
        assert has_key(config, key), f"{config_argument} has no key {key}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_linked_file_and_image_exists(document):
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", document.read_text())
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    missing = [t for t in local if not (document.parent / t).exists()]
    assert not missing, f"{document.name} links to {missing}"


def test_readme_fits_a_sitting_and_shows_a_picture_first():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    first_picture = next(i for i, line in enumerate(lines) if line.startswith("!["))
    assert first_picture < 15
