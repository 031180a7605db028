"""Writes that a reader (or a crash) never sees half done: temp file, then rename.

Every file the product writes (images, reports, exports, config.json) goes through here;
local paths and gs:// alike (etils.epath).
"""

from __future__ import annotations

from etils import epath


def write_bytes(path: str | epath.Path, data: bytes) -> None:
    """Writes `data` to `path` atomically, creating its folder."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_text(path: str | epath.Path, text: str) -> None:
    write_bytes(path, text.encode())
