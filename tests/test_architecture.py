"""The direction imports may run (docs/ARCHITECTURE.md), read from the source: the lower layers
never reach up, config checking loads no network or evaluator code, evaluation never reaches
into serving, and test files share helpers through tests/helpers.py only."""

import ast
import pathlib

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


@pytest.mark.parametrize("lower", ["models", "ops", "data", "interop"])
def test_lower_layers_never_import_upward(lower):
    for path in files_in(lower):
        upward = {m for m in imports_of(path)
                  if m.split(".")[1:2] and m.split(".")[1] in ("train", "eval", "serving", "perf")}
        assert not upward, f"{path} imports {sorted(upward)}"


def test_config_checks_import_name_tables_only():
    allowed = {"p2p_jax", "p2p_jax.choices", "p2p_jax.errors", "p2p_jax.sizes",
               "p2p_jax.errors.ConfigError", "p2p_jax.sizes.downsampling_factor",
               "p2p_jax.sizes.image_hw"}
    assert imports_of(PACKAGE / "config_checks.py") <= allowed


def test_evaluation_never_imports_serving():
    for path in files_in("eval"):
        assert not {m for m in imports_of(path) if m.startswith("p2p_jax.serving")}, path


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
