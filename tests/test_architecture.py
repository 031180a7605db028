"""The direction imports may run (docs/ARCHITECTURE.md), read from the source: the lower layers
never reach up, config checking loads no network or evaluator code, inference (evaluation,
serving) never reaches into training, the models see only `ops`' public names, and test files
share helpers through tests/helpers.py only. The documents name modules that exist."""

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path("p2p_jax")


def imports_of(path: pathlib.Path) -> set[str]:
    """Every p2p_jax module a file imports (at any depth: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("p2p_jax"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("p2p_jax"))
    return found


def files_in(*folders: str) -> list[pathlib.Path]:
    return [p for folder in folders for p in sorted((PACKAGE / folder).glob("*.py"))]


def folder_of(module: str) -> str:
    """'p2p_jax.eval.report.x' -> 'eval'; '' for the package's top level."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("lower", ["config", "models", "ops", "data", "interop"])
def test_lower_layers_never_import_upward(lower):
    for path in files_in(lower):
        upward = {m for m in imports_of(path)
                  if folder_of(m) in ("train", "eval", "serving", "perf")}
        assert not upward, f"{path} imports {sorted(upward)}"


@pytest.mark.parametrize("inference", ["eval", "serving"])
def test_inference_never_imports_training(inference):
    """Predict, eval, export and serve run a generator restored alone; `train/` (its state,
    optimizers, losses, the import that writes a training checkpoint) stays out."""
    for path in files_in(inference):
        training = {m for m in imports_of(path) if folder_of(m) == "train"}
        assert not training, f"{path} imports {sorted(training)}"


def test_serving_stands_on_generation_not_on_evaluation():
    for path in files_in("serving"):
        assert not {m for m in imports_of(path) if folder_of(m) == "eval"}, path


def test_models_use_only_the_public_names_of_ops():
    """Which backend form runs (the convolutions, the label lookups) is decided in `ops` once
    per run; the networks call `ops.<name>` for names `ops.__all__` lists."""
    public = set(ast.literal_eval(next(
        node.value for node in ast.parse((PACKAGE / "ops" / "__init__.py").read_text()).body
        if isinstance(node, ast.Assign) and node.targets[0].id == "__all__")))
    for path in files_in("models"):
        text = path.read_text()
        inner = {m for m in imports_of(path) if m.startswith("p2p_jax.ops.")}
        assert not inner, f"{path} imports {sorted(inner)}"
        used = set(re.findall(r"\bops\.(\w+)", text))
        assert used <= public, f"{path} uses ops.{sorted(used - public)}"
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name != "ops":
            inner = {m for m in imports_of(path) if m.startswith("p2p_jax.ops.")}
            assert not inner, f"{path} imports {sorted(inner)}"


def test_the_package_top_level_stays_small():
    modules = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(modules) <= 8, sorted(modules)


@pytest.mark.parametrize("document", ["CONTRIBUTING.md", "README.md",
                                      *sorted(map(str, pathlib.Path("docs").glob("*.md")))])
def test_documents_name_modules_that_exist(document):
    """Every `folder/module.py` a document names is a file of the package or the repository;
    a bare `module.py` (in a listing of its folder) is a file somewhere in them."""
    text = pathlib.Path(document).read_text()
    named = set(re.findall(r"(?<![\w/.])((?:[\w-]+/)*[\w-]+\.py)\b", text))
    ours = {p.name for folder in ("p2p_jax", "configs", "tests", "scripts", "benchmarks")
            for p in pathlib.Path(folder).rglob("*.py")}
    foreign = {"combine_A_and_B.py", "train.py", "test.py"}  # The reference's own scripts.
    missing = [name for name in sorted(named - foreign)
               if not (pathlib.Path(name).exists() or (PACKAGE / name).exists()
                       or ("/" not in name and name in ours))]
    assert not missing, f"{document} names {missing}"


def test_config_checks_import_name_tables_only():
    allowed = {"p2p_jax.config", "p2p_jax.config.choices", "p2p_jax.errors",
               "p2p_jax.config.sizes", "p2p_jax.errors.ConfigError",
               "p2p_jax.config.sizes.downsampling_factor", "p2p_jax.config.sizes.image_hw"}
    assert imports_of(PACKAGE / "config" / "checks.py") <= allowed


def test_evaluation_never_imports_serving():
    for path in files_in("eval"):
        assert not {m for m in imports_of(path) if folder_of(m) == "serving"}, path


def test_every_module_says_what_it_is_for():
    for path in sorted(PACKAGE.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring and docstring.strip(), f"{path} has no module docstring"


def test_test_files_share_helpers_through_one_module():
    for path in sorted(pathlib.Path("tests").glob("test_*.py")):
        tests_imports = {m for m in _test_imports(path) if m.startswith("tests.")}
        assert tests_imports <= {"tests.helpers"}, f"{path} imports {tests_imports}"


def _test_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
