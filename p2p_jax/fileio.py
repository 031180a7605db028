"""The one file layer: every read and write the product does, local paths and gs:// alike
(etils.epath, which speaks gs:// through TensorFlow's gfile). Writes are atomic (temp file,
then rename): a reader, or a crash, never sees one half done.

Local paths behave exactly as the os module's. Listings are made once, where a source or a
predict run starts (a bucket listing is a network round trip per folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
import uuid
from collections.abc import Iterator

from absl import logging
from etils import epath

from p2p_jax.errors import UserError

LOCK_FILE = ".lock"


def is_remote(path: str | os.PathLike) -> bool:
    """A path with a scheme (gs://, s3://...): no local file system call can reach it."""
    return "://" in os.fspath(path)


def is_dir(path: str | os.PathLike) -> bool:
    return epath.Path(path).is_dir()


def is_file(path: str | os.PathLike) -> bool:
    """A regular file (after symlinks): a device (`/dev/zero`), FIFO or socket is not one, so
    it is never read as an image, whatever its name."""
    return epath.Path(path).is_file() if is_remote(path) else os.path.isfile(path)


def _regular(folder: str | os.PathLike, names: list[str]) -> list[str]:
    """`names` in `folder` that are regular files; the others are named in one warning."""
    if is_remote(folder):
        return names
    kept = [n for n in names if os.path.isfile(os.path.join(folder, n))]
    if len(kept) < len(names):
        others = sorted(set(names) - set(kept))
        logging.warning("%s: skipped %d entries that are not regular files (devices, FIFOs, "
                        "sockets, broken links): %s", folder, len(others), ", ".join(others[:5]))
    return kept


def size(path: str | os.PathLike) -> int:
    return epath.Path(path).stat().length


def read_bytes(path: str | os.PathLike) -> bytes:
    return epath.Path(path).read_bytes()


def list_files(folder: str | os.PathLike, extensions: tuple[str, ...]) -> list[str]:
    """Sorted names (not paths) of the files in `folder` whose names end in `extensions`
    (any case)."""
    return _regular(folder, sorted(p.name for p in epath.Path(folder).iterdir()
                                   if p.name.lower().endswith(extensions)))


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
    return _regular(root, sorted(found))


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
    """Writes `data` to `path` atomically, creating its folder. A failed write (a full disk)
    leaves no staging file and raises an OSError naming `path`."""
    path = epath.Path(path)
    tmp = _staging_path(path)
    with _unstaged_on_error(tmp, path):
        tmp.write_bytes(data)
        tmp.replace(path)


@contextlib.contextmanager
def _unstaged_on_error(tmp: epath.Path, path: epath.Path) -> Iterator[None]:
    try:
        yield
    except BaseException as e:
        with contextlib.suppress(Exception):
            tmp.unlink()
        if isinstance(e, OSError) and not e.filename:  # A write's error names no file.
            raise OSError(e.errno, e.strerror or str(e), os.fspath(path)) from None
        raise


def write_text(path: str | epath.Path, text: str) -> None:
    write_bytes(path, text.encode())


def copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """An atomic copy (bucket to local disk, e.g. staged ArrayRecord shards)."""
    tmp = _staging_path(epath.Path(target))
    with _unstaged_on_error(tmp, epath.Path(target)):
        epath.Path(source).copy(tmp, overwrite=True)
        tmp.replace(target)


@contextlib.contextmanager
def workdir_lock(workdir: str, holder: bool = True) -> Iterator[None]:
    """One writing run per local workdir: an advisory lock on WORKDIR/.lock, held while the
    block runs by the `holder` (process 0, for all the processes of its run). The OS drops it
    when the process ends, however it ends, so a crashed run never leaves it stuck. A second
    run is one line naming the holder. A gs:// workdir has no such lock (object stores have no
    advisory locks): keeping one run on it is the user's part."""
    if is_remote(workdir) or not holder:
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, LOCK_FILE), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            other = lock.read().strip() or "another process"
            raise UserError(f"--workdir={workdir} is in use by another run ({other}); wait "
                            "for it to end, or choose another --workdir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}, since "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
