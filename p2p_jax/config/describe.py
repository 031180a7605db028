"""`--mode=config`: every key of a config with its value, its allowed choices and the comment
it has in `defaults.py`, read from the sources themselves (the defaults' comments, and the
choice tables the start-up checks hold each key to), so the listing cannot drift from them."""

from __future__ import annotations

import ast
import inspect
import io
import tokenize

import ml_collections

from p2p_jax.config import checks, choices, defaults


def _dotted(node: ast.expr) -> str | None:
    """'model.ngf' for the target `config.model.ngf`; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "config" and parts:
        return ".".join(reversed(parts))
    return None


def key_comments() -> dict[str, str]:
    """{key: comment}: the comment at the end of the key's line in defaults.py, or the block
    of comment lines right above it."""
    source = inspect.getsource(defaults)
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT}
    lines = source.splitlines()
    found = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        key = _dotted(node.targets[0])
        if key is None or key in found:
            continue
        text = comments.get(node.lineno)
        if text is None:
            above, row = [], node.lineno - 1
            while row in comments and lines[row - 1].lstrip().startswith("#"):
                above.insert(0, comments[row])
                row -= 1
            text = " ".join(above)
        found[key] = text
    return found


def key_choices() -> dict[str, tuple[str, ...]]:
    """{key: allowed names}, from the `_choice("key", value, choices.TABLE)` calls of the
    start-up checks."""
    found = {}
    for node in ast.walk(ast.parse(inspect.getsource(checks))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "_choice" and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[2], ast.Attribute)):
            found[node.args[0].value] = getattr(choices, node.args[2].attr)
    return found


def describe(config: ml_collections.ConfigDict) -> str:
    """One line per key, `key = value`, then its choices and comment where it has them."""
    comments, allowed = key_comments(), key_choices()
    rows = []

    def walk(section: ml_collections.ConfigDict, prefix: str) -> None:
        for name in section:
            key, value = f"{prefix}{name}", section[name]
            if isinstance(value, ml_collections.ConfigDict):
                walk(value, f"{key}.")
                continue
            notes = [f"one of {' | '.join(allowed[key])}"] if key in allowed else []
            if comments.get(key):
                notes.append(comments[key])
            rows.append((f"{key} = {value!r}", "  # " + "; ".join(notes) if notes else ""))

    walk(config, "")
    width = max(len(text) for text, _ in rows)
    return "\n".join(f"{text:<{width}}{note}".rstrip() for text, note in rows)
