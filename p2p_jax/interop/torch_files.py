"""PyTorch `state_dict` files (.pth, zip and legacy formats) read and written without torch.

Published networks (the FID Inception weights of pytorch-fid, the reference's generators,
torchvision's VGG19) ship as such files, and users hand us files of unknown origin. Reading
treats every file as hostile: every pickle goes through an unpickler that builds only plain
containers and tensor references (never an arbitrary class or function, so a file cannot run
code), and every tensor's offset, size and strides are checked against the bytes its storage
holds before any array is made. Anything wrong is one `WeightsFileError` naming the file.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
from typing import NamedTuple

import numpy as np

from p2p_jax import fileio
from p2p_jax.errors import UserError

# torch storage class -> NumPy dtype of its elements (bfloat16 is read as its bits).
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
           "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
           "BoolStorage": np.bool_}
_STORAGE_OF = {np.dtype(v): k for k, v in _DTYPES.items() if k != "BFloat16Storage"}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# A tensor may not hold more elements than this (2**31, 8 GiB of float32), whatever it claims.
MAX_ELEMENTS = 2**31


class WeightsFileError(UserError, ValueError):
    """A weights file that cannot be read; the message names the file and what is wrong."""


class _StorageClass(NamedTuple):
    name: str


class _Storage(NamedTuple):
    key: str
    storage_class: str
    numel: int


class _Tensor(NamedTuple):
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, offset, size, stride, *unused) -> _Tensor:
    del unused  # requires_grad, backward hooks, metadata
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(type(v) is int for v in (offset, *size, *stride))):
        raise pickle.UnpicklingError("a tensor whose offset, size or stride is not integers")
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
    del unused  # requires_grad, backward hooks
    return data


_ALLOWED = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("collections", "OrderedDict"): collections.OrderedDict}


class _Unpickler(pickle.Unpickler):
    """Builds plain containers, tensor references and storage markers, nothing else."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:  # A fresh function each time: a pickle's BUILD can set
            target = _ALLOWED[module, name]  # attributes on what it gets, never on ours.
            return lambda *args: target(*args)
        if module == "torch" and name in _DTYPES:
            return _StorageClass(name)
        raise pickle.UnpicklingError(f"refuses to build {module}.{name}")

    def persistent_load(self, pid):
        # zip: ('storage', class, key, location, numel); legacy adds view metadata.
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageClass) or type(pid[4]) is not int
                or pid[4] < 0):
            raise pickle.UnpicklingError(f"malformed storage reference {pid!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("legacy storage views are not supported")
        return _Storage(str(pid[2]), pid[1].name, pid[4])


# Opcodes a state_dict pickle uses (protocols 2-4 as torch writes them); a memo index past
# this is refused, since the unpickler would allocate the memo up to it.
_OPCODES = {"PROTO", "FRAME", "STOP", "MARK", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
            "BINPERSID", "BININT", "BININT1", "BININT2", "LONG1", "LONG4", "NONE", "NEWTRUE",
            "NEWFALSE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "SHORT_BINSTRING",
            "BINSTRING", "SHORT_BINBYTES", "BINBYTES", "BINFLOAT", "EMPTY_TUPLE", "TUPLE",
            "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "LIST", "APPEND", "APPENDS", "EMPTY_DICT",
            "DICT", "SETITEM", "SETITEMS", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET",
            "MEMOIZE", "POP", "POP_MARK", "DUP"}
_MAX_MEMO = 2**20


def _unpickle_at(data: bytes, start: int = 0) -> tuple[object, int]:
    """The pickle at `data[start:]` and where it ends. Its opcodes are scanned first (in pure
    Python, reading only bytes that are there): an unknown opcode, a length or memo index that
    would make the unpickler allocate beyond the file, or a missing STOP is refused before
    anything is built."""
    stream = io.BytesIO(data)
    stream.seek(start)
    for opcode, argument, _ in pickletools.genops(stream):  # Ends at STOP, or raises.
        if opcode.name not in _OPCODES:
            raise pickle.UnpicklingError(f"opcode {opcode.name} at byte {stream.tell()}")
        if opcode.name in ("BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET") and (
                argument > _MAX_MEMO):
            raise pickle.UnpicklingError(f"memo index {argument} at byte {stream.tell()}")
    end = stream.tell()
    return _Unpickler(io.BytesIO(data[start:end])).load(), end


def _check_extent(name: str, ref: _Tensor, storage_numel: int) -> None:
    """The elements `ref` addresses all lie inside its storage, and there are not absurdly many
    of them (a zero stride repeats elements, so the count is bounded by the storage)."""
    if ref.offset < 0 or any(s < 0 for s in ref.size) or any(s < 0 for s in ref.stride):
        raise ValueError(f"{name}: negative offset, size or stride")
    numel = math.prod(ref.size)
    if numel == 0:
        return
    if numel > min(max(storage_numel, 1), MAX_ELEMENTS):
        raise ValueError(f"{name}: claims {numel} elements over a storage of {storage_numel}")
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= storage_numel:
        raise ValueError(f"{name}: reads element {last} of a storage of {storage_numel}")


def _materialize(name: str, ref: _Tensor, storages: dict[str, np.ndarray]) -> np.ndarray:
    if ref.storage.key not in storages:
        raise ValueError(f"{name}: refers to storage {ref.storage.key!r}, which the file lacks")
    data = storages[ref.storage.key]
    _check_extent(name, ref, data.size)
    if not math.prod(ref.size):
        array = np.zeros(ref.size, data.dtype)
    else:
        view = np.lib.stride_tricks.as_strided(
            data[ref.offset:], shape=ref.size,
            strides=tuple(s * data.itemsize for s in ref.stride), writeable=False)
        array = np.array(view)
    if ref.storage.storage_class == "BFloat16Storage":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _storage_array(raw: bytes, storage: _Storage, big_endian: bool) -> np.ndarray:
    dtype = np.dtype(_DTYPES[storage.storage_class])
    if len(raw) != storage.numel * dtype.itemsize:
        raise ValueError(f"storage {storage.key!r} holds {len(raw)} bytes, not the "
                         f"{storage.numel} x {dtype.itemsize} it declares (truncated?)")
    if dtype == np.bool_:  # Any byte may be in the file; only 0 and 1 are valid booleans.
        return np.frombuffer(raw, np.uint8) != 0
    array = np.frombuffer(raw, dtype.newbyteorder(">") if big_endian else dtype)
    return array.astype(dtype) if big_endian else array


def _tensor_refs(root) -> dict[str, _Tensor]:
    if not isinstance(root, dict):
        raise ValueError(f"holds a {type(root).__name__}, not a state_dict (a dict of tensors)")
    refs = {}
    for key, value in root.items():
        if not isinstance(key, str):
            raise ValueError(f"has a non-text key {key!r:.40}")
        if not isinstance(value, _Tensor):
            raise ValueError(f"{key} is a {type(value).__name__}, not a tensor; pass the "
                             "state_dict itself (torch.save(net.state_dict(), path))")
        refs[key] = value
    return refs


def _read_zip(archive: zipfile.ZipFile) -> tuple[dict[str, _Tensor], dict[str, np.ndarray]]:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise ValueError("is a zip file without exactly one data.pkl")
    root = pickles[0][:-len("data.pkl")]
    names = set(archive.namelist())
    big_endian = (f"{root}byteorder" in names
                  and archive.read(f"{root}byteorder").strip() == b"big")
    refs = _tensor_refs(_unpickle_at(archive.read(pickles[0]))[0])
    storages = {}
    for ref in refs.values():
        storage, member = ref.storage, f"{root}data/{ref.storage.key}"
        if storage.key in storages:
            continue
        if member not in names:
            raise ValueError(f"lacks the storage {storage.key!r} a tensor refers to")
        info = archive.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:  # torch.save never compresses; a
            raise ValueError(f"storage {storage.key!r} is compressed; re-save it with "
                             "torch.save")  # compressed member could expand without bound.
        expected = storage.numel * np.dtype(_DTYPES[storage.storage_class]).itemsize
        if info.file_size != expected:
            raise ValueError(f"storage {storage.key!r} holds {info.file_size} bytes, not the "
                             f"{expected} it declares")
        storages[storage.key] = _storage_array(archive.read(member), storage, big_endian)
    return refs, storages


def _read_legacy(data: bytes) -> tuple[dict[str, _Tensor], dict[str, np.ndarray]]:
    """Pre-1.6 format: magic, protocol, system info and the state as pickles, then the list of
    storage keys and, for each, an int64 element count and the raw bytes."""
    records, position = [], 0
    for _ in range(5):
        record, position = _unpickle_at(data, position)
        records.append(record)
        if len(records) == 1 and record != _LEGACY_MAGIC:
            raise ValueError("is not a PyTorch weights file (neither zip nor the legacy format)")
    _, protocol, info, state, keys = records
    if protocol != _LEGACY_PROTOCOL:
        raise ValueError("has an unknown legacy protocol version")
    big_endian = isinstance(info, dict) and info.get("little_endian") is False
    refs = _tensor_refs(state)
    f = io.BytesIO(data)
    f.seek(position)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError("has a malformed storage list")
    declared = {ref.storage.key: ref.storage for ref in refs.values()}
    storages = {}
    for key in keys:
        if key not in declared:
            raise ValueError(f"lists storage {key!r}, which no tensor uses")
        header = f.read(8)
        if len(header) != 8:
            raise ValueError("is truncated in its storages")
        count = struct.unpack(">q" if big_endian else "<q", header)[0]
        storage = declared[key]
        if count != storage.numel:
            raise ValueError(f"storage {key!r} holds {count} elements, not the declared "
                             f"{storage.numel}")
        nbytes = count * np.dtype(_DTYPES[storage.storage_class]).itemsize
        if nbytes > len(data) - f.tell():
            raise ValueError(f"storage {key!r} claims {nbytes} bytes beyond the end of the file")
        storages[key] = _storage_array(f.read(nbytes), storage, big_endian)
    return refs, storages


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """name -> array for a file written by `torch.save(net.state_dict(), path)`.

    Raises WeightsFileError (one line naming the file) for anything that is not such a file:
    missing, truncated, garbage, code-carrying pickles, out-of-bounds tensors.
    """
    path = os.fspath(path)
    if not fileio.is_file(path):
        raise WeightsFileError(f"{path}: no such weights file")
    try:
        # A bucket's file is read whole first; a local one is read where it lies.
        source = io.BytesIO(fileio.read_bytes(path)) if fileio.is_remote(path) else path
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                refs, storages = _read_zip(archive)
        else:
            if isinstance(source, io.BytesIO):
                data = source.getvalue()
            else:
                with open(source, "rb") as f:
                    data = f.read()
            refs, storages = _read_legacy(data)
        return {name: _materialize(name, ref, storages) for name, ref in refs.items()}
    except WeightsFileError:
        raise
    except Exception as e:  # A hostile file can provoke any error type; each is this file's.
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, pickle.UnpicklingError | EOFError):
            reason = f"its pickle is unreadable or unsafe ({reason})"
        raise WeightsFileError(f"{path}: not a usable PyTorch state_dict: {reason}") from None


# Writing: the zip format torch.load reads, with its pickle emitted opcode by opcode (no torch,
# so the torch globals it names need not be importable here).


def _text(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


_EMPTY_ORDERED_DICT = _global("collections", "OrderedDict") + b")R"


def _tensor_pickle(key: str, array: np.ndarray) -> bytes:
    storage = _tuple([_text("storage"), _global("torch", _STORAGE_OF[array.dtype]),
                      _text(key), _text("cpu"), _int(array.size)])
    strides = [int(np.prod(array.shape[i + 1:], dtype=np.int64)) for i in range(array.ndim)]
    return (_global("torch._utils", "_rebuild_tensor_v2")
            + _tuple([storage + b"Q", _int(0), _tuple([_int(d) for d in array.shape]),
                      _tuple([_int(s) for s in strides]), b"\x89", _EMPTY_ORDERED_DICT])
            + b"R")


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # The earliest a zip entry can carry.


def state_dict_bytes(tensors: dict[str, np.ndarray], archive: str = "archive") -> bytes:
    """The bytes `torch.save(state_dict, f)` would write for these arrays (zip format). Every
    member carries one fixed timestamp, so equal weights give byte-identical files."""
    arrays = {}
    for name, value in tensors.items():
        array = np.asarray(value, order="C")
        if array.dtype.newbyteorder("=") not in _STORAGE_OF:
            raise ValueError(f"{name}: cannot store {array.dtype} as a torch tensor")
        arrays[name] = array.astype(array.dtype.newbyteorder("<"))
    body = b"".join(_text(name) + _tensor_pickle(str(i), array)
                    for i, (name, array) in enumerate(arrays.items()))
    data_pkl = b"\x80\x02" + _EMPTY_ORDERED_DICT + b"(" + body + b"u."
    members = [("data.pkl", data_pkl), ("byteorder", b"little"),
               *((f"data/{i}", array.tobytes()) for i, array in enumerate(arrays.values())),
               ("version", b"3\n")]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(f"{archive}/{name}", date_time=_ZIP_TIME), data)
    return buffer.getvalue()
