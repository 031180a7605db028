"""The one file layer: every read and write the product does, local paths and gs:// alike
(etils.epath, which speaks gs:// through TensorFlow's gfile). Writes are atomic (temp file,
then rename): a reader, or a crash, never sees one half done.

Local paths behave exactly as the os module's. Listings are made once, where a source or a
predict run starts (a bucket listing is a network round trip per folder).
"""

from __future__ import annotations

import os
import uuid

from etils import epath


def is_remote(path: str | os.PathLike) -> bool:
    """A path with a scheme (gs://, s3://...): no local file system call can reach it."""
    return "://" in os.fspath(path)


def is_dir(path: str | os.PathLike) -> bool:
    return epath.Path(path).is_dir()


def is_file(path: str | os.PathLike) -> bool:
    return epath.Path(path).is_file()


def size(path: str | os.PathLike) -> int:
    return epath.Path(path).stat().length


def read_bytes(path: str | os.PathLike) -> bytes:
    return epath.Path(path).read_bytes()


def list_files(folder: str | os.PathLike, extensions: tuple[str, ...]) -> list[str]:
    """Sorted names (not paths) of the files in `folder` whose names end in `extensions`
    (any case)."""
    return sorted(p.name for p in epath.Path(folder).iterdir()
                  if p.name.lower().endswith(extensions))


def list_dirs(folder: str | os.PathLike) -> list[str]:
    return sorted(p.name for p in epath.Path(folder).iterdir() if p.is_dir())


def walk_files(root: str | os.PathLike, extensions: tuple[str, ...]) -> list[str]:
    """Sorted paths relative to `root` of every file below it with one of `extensions`."""
    root_path = epath.Path(root)
    found = []
    for folder, _, files in root_path.walk():
        relative = os.path.relpath(os.fspath(folder), os.fspath(root_path))
        found += [os.path.normpath(os.path.join(relative, f)) for f in files
                  if f.lower().endswith(extensions)]
    return sorted(found)


def glob(pattern: str) -> list[str]:
    """Sorted paths matching a pattern in its last component (`folder/train-*.array_record`)."""
    folder, _, name = os.fspath(pattern).rpartition("/")
    path = epath.Path(folder or ".")
    return sorted(os.fspath(p) for p in path.glob(name)) if path.is_dir() else []


def _staging_path(path: epath.Path) -> epath.Path:
    """A temp name beside `path`, its folder created: concurrent writers of one path (serve's
    requests, processes staging the same shard) each stage under their own, and the last
    rename wins whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def write_bytes(path: str | epath.Path, data: bytes) -> None:
    """Writes `data` to `path` atomically, creating its folder."""
    path = epath.Path(path)
    tmp = _staging_path(path)
    tmp.write_bytes(data)
    tmp.replace(path)


def write_text(path: str | epath.Path, text: str) -> None:
    write_bytes(path, text.encode())


def copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """An atomic copy (bucket to local disk, e.g. staged ArrayRecord shards)."""
    tmp = _staging_path(epath.Path(target))
    epath.Path(source).copy(tmp, overwrite=True)
    tmp.replace(target)
