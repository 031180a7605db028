"""`.safetensors` state_dicts (Hugging Face's weight format: a JSON header and raw tensors,
so reading one can never run code) written and read with the same key names as the PyTorch
`.pth` files of `torch_files`: `safetensors.torch.load_file` + `load_state_dict` in PyTorch."""

from __future__ import annotations

import os

import numpy as np
import safetensors.numpy

from p2p_jax import fileio
from p2p_jax.interop.torch_files import WeightsFileError

SUFFIX = ".safetensors"


def state_dict_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The file's bytes; `metadata` (strings) goes into its header."""
    contiguous = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    return safetensors.numpy.save(contiguous, metadata={"format": "pt", **metadata})


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """name -> array; anything that is not a readable safetensors file (missing, truncated, a
    bad header, a dtype NumPy has no type for) is one WeightsFileError naming the file."""
    path = os.fspath(path)
    if not fileio.is_file(path):
        raise WeightsFileError(f"{path}: no such weights file")
    try:
        return dict(safetensors.numpy.load(fileio.read_bytes(path)))
    except Exception as e:  # The parser's own errors and NumPy's dtype errors alike.
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsFileError(f"{path}: not a usable safetensors file: {reason}") from None
