"""Reads PyTorch `state_dict` files (.pth, zip and legacy formats) into NumPy without torch.

Published evaluation networks (the FID Inception weights of pytorch-fid, segmentation nets for
FCN-scores) ship as such files; this reads only tensors and plain containers, never arbitrary
classes, so an untrusted file cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from typing import NamedTuple

import numpy as np

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32,
           "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
           "BoolStorage": np.bool_}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Storage(NamedTuple):
    key: str
    dtype: np.dtype


class _Tensor(NamedTuple):
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _tensor_ref(storage, offset, size, stride, *unused) -> _Tensor:
    del unused  # requires_grad, backward hooks, metadata
    return _Tensor(storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Allows only the torch rebuild function, storage markers and ordered dicts; tensors come
    out as references, filled in once the raw storages are read."""

    def find_class(self, module, name):
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"),
                              ("torch._utils", "_rebuild_tensor")):
            return _tensor_ref
        if module == "torch" and name in _DTYPES:
            if _DTYPES[name] is None:
                raise ValueError(f"{name} tensors are not supported; save the weights as float32")
            return _DTYPES[name]
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        return _Storage(str(pid[2]), np.dtype(pid[1]))


def _materialize(ref: _Tensor, storages: dict[str, np.ndarray]) -> np.ndarray:
    data = storages[ref.storage.key][ref.offset:]
    itemsize = data.itemsize
    return np.lib.stride_tricks.as_strided(
        data, shape=ref.size, strides=tuple(s * itemsize for s in ref.stride)).copy()


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """name -> array for a file written by `torch.save(model.state_dict(), path)`."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickle_name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            root = pickle_name[:-len("data.pkl")]
            with archive.open(pickle_name) as f:
                refs = _Unpickler(f).load()
            storages = {ref.storage.key: np.frombuffer(
                archive.read(f"{root}data/{ref.storage.key}"), ref.storage.dtype)
                for ref in refs.values()}
    else:
        with open(path, "rb") as f:  # Pre-1.6 format: pickles, then (int64 count, bytes) each.
            if pickle.load(f) != _LEGACY_MAGIC:
                raise ValueError(f"{path} is not a PyTorch weights file")
            pickle.load(f)  # protocol version
            pickle.load(f)  # system info
            refs = _Unpickler(f).load()
            dtypes = {ref.storage.key: ref.storage.dtype for ref in refs.values()}
            storages = {}
            for key in pickle.load(f):
                count = int(np.frombuffer(f.read(8), np.int64)[0])
                storages[key] = np.frombuffer(f.read(count * dtypes[key].itemsize), dtypes[key])
    return {name: _materialize(ref, storages) for name, ref in refs.items()}
