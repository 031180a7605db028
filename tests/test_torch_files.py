"""PyTorch state_dict files without torch: files torch wrote load exactly; weights files are
untrusted: hostile ones are refused in one error, never run code or crash.

Every hostile file is built here with pickle and zipfile alone, the way an attacker would.
"""

import collections
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from p2p_jax.interop import torch_files
from p2p_jax.interop.torch_files import WeightsFileError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class RunsCommand:
    """A pickle that, if unpickled with plain `pickle`, runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class FakeStorage:
    """Pickled by reference as torch.FloatStorage, the way torch.save names storage types."""


def torch_like_pickle(tensors, monkeypatch):
    """data.pkl as torch.save writes it: an OrderedDict of _rebuild_tensor_v2 calls over
    persistent storage ids. `tensors`: name -> (storage key, numel, offset, size, stride)."""
    import types

    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", \
        "_rebuild_tensor_v2"
    FakeStorage.__module__, FakeStorage.__qualname__ = "torch", "FloatStorage"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FakeStorage, utils, \
        _rebuild_tensor_v2
    monkeypatch.setitem(__import__("sys").modules, "torch", torch)
    monkeypatch.setitem(__import__("sys").modules, "torch._utils", utils)

    class Ref:
        def __init__(self, key, numel, offset, size, stride):
            self.key, self.numel, self.args = key, numel, (offset, size, stride)

        def __reduce__(self):
            return (_rebuild_tensor_v2, (StorageRef(self.key, self.numel), *self.args, False,
                                         collections.OrderedDict()))

    class StorageRef:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, StorageRef):
                return ("storage", FakeStorage, obj.key, "cpu", obj.numel)
            return None

    buffer = io.BytesIO()
    state = collections.OrderedDict((name, Ref(*spec)) for name, spec in tensors.items())
    Pickler(buffer, protocol=2).dump(state)
    return buffer.getvalue()


def zip_file(path, data_pkl, storages):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
    return path


def legacy_file(path, records, tail=b""):
    path.write_bytes(b"".join(pickle.dumps(r, protocol=2) if not isinstance(r, bytes) else r
                              for r in records) + tail)
    return path


@pytest.mark.parametrize("form", ["zip", "legacy"])
def test_torch_state_dicts_load_without_torch(form):
    """Files written by torch.save (both formats) with strided views and an int64 counter."""
    state = torch_files.load_state_dict(f"tests/data/tiny_state_{form}.pth")
    np.testing.assert_array_equal(state["fc.weight"], np.arange(12.0).reshape(3, 4).T)
    np.testing.assert_array_equal(state["fc.bias"], [4.0, 5.0, 6.0, 7.0])
    assert state["Conv2d_1a_3x3.conv.weight"][1, 2, 2, 2] == pytest.approx(5.3)
    assert state["Conv2d_1a_3x3.bn.num_batches_tracked"] == 7


def test_written_files_load_back_bit_for_bit(tmp_path):
    tensors = {"w": np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32),
               "b": np.arange(5, dtype=np.float32), "count": np.array(7, np.int64),
               "flags": np.array([True, False]), "empty": np.zeros((0, 3), np.float32)}
    path = tmp_path / "w.pth"
    path.write_bytes(torch_files.state_dict_bytes(tensors))
    loaded = torch_files.load_state_dict(path)
    assert list(loaded) == list(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)


def test_written_files_do_not_depend_on_the_clock():
    """Equal weights give byte-identical files (exports compared or cached by content): every
    zip member carries one fixed timestamp, stored uncompressed as PyTorch writes them."""
    data = torch_files.state_dict_bytes({"w": np.ones((2, 2), np.float32)})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    assert [m.filename for m in members] == ["archive/data.pkl", "archive/byteorder",
                                             "archive/data/0", "archive/version"]
    assert {m.date_time for m in members} == {(1980, 1, 1, 0, 0, 0)}
    assert {m.compress_type for m in members} == {zipfile.ZIP_STORED}


@pytest.mark.parametrize("position", range(5))
def test_legacy_pickles_never_run_code(tmp_path, position):
    """Magic, protocol, system info, state and storage list: each is a pickle, each refused."""
    marker = tmp_path / "pwned"
    records = [LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True},
               collections.OrderedDict(), []]
    records[position] = RunsCommand(marker)
    path = legacy_file(tmp_path / "evil.pth", records)
    with pytest.raises(WeightsFileError, match=r"evil\.pth.*(unsafe|not a PyTorch)"):
        torch_files.load_state_dict(path)
    assert not marker.exists()


def test_zip_pickle_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    path = zip_file(tmp_path / "evil.pth", pickle.dumps(RunsCommand(marker), protocol=2), {})
    with pytest.raises(WeightsFileError, match="refuses to build posix.system"):
        torch_files.load_state_dict(path)
    assert not marker.exists()


def test_pickles_cannot_patch_the_loader(tmp_path):
    """BUILD with slot state runs setattr on whatever a global resolved to: it must reach a
    throwaway, never the loader's own functions."""
    data = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"  # the allowed global
            b"N}(X\x05\x00\x00\x00probeK\x01u\x86b.")  # BUILD (None, {'probe': 1})
    path = zip_file(tmp_path / "patch.pth", data, {})
    with pytest.raises(WeightsFileError, match="not a state_dict"):
        torch_files.load_state_dict(path)
    assert not any(hasattr(getattr(torch_files, name), "probe") for name in dir(torch_files))


@pytest.mark.parametrize("data,message", [
    (b"\x80\x02}r\xff\xff\xff\x7f.", "memo index 2147483647"),  # Memo array of 16 GB.
    (b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"xx.", "only 3 remain"),  # Huge bytes.
    (b"\x80\x02ccollections\nOrderedDict\n)R", "exhausted before seeing STOP"),
    (b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00lsR.", "refuses to build posix.system"),
])
def test_pickles_that_would_allocate_or_reach_globals_are_refused(tmp_path, data, message):
    path = zip_file(tmp_path / "alloc.pth", data, {})
    with pytest.raises(WeightsFileError, match=message):
        torch_files.load_state_dict(path)


@pytest.mark.parametrize("spec,storage_bytes,message", [
    (("0", 4, 0, (4,), (10**9,)), 16, "reads element"),  # Stride far past the storage.
    (("0", 4, 0, (4,), (-1,)), 16, "negative"),
    (("0", 4, 3, (2,), (1,)), 16, "reads element"),  # Offset + size past the end.
    (("0", 4, -2, (2,), (1,)), 16, "negative"),
    (("0", 4, 0, (10**12,), (0,)), 16, "claims 1000000000000 elements"),  # Expansion bomb.
    (("1", 4, 0, (4,), (1,)), 16, "lacks the storage '1'"),  # Unknown storage key.
    (("0", 4, 0, (4,), (1,)), 12, "holds 12 bytes, not the 16"),  # Truncated storage.
    (("0", 2**40, 0, (4,), (1,)), 16, "holds 16 bytes"),  # Huge declared storage.
])
def test_out_of_bounds_tensors_are_refused(tmp_path, monkeypatch, spec, storage_bytes, message):
    data = torch_like_pickle({"weight": spec}, monkeypatch)
    path = zip_file(tmp_path / "bad.pth", data, {"0": b"\x00" * storage_bytes})
    with pytest.raises(WeightsFileError, match=message):
        torch_files.load_state_dict(path)


def test_valid_torch_like_pickle_with_a_strided_view_loads(tmp_path, monkeypatch):
    """The same hand-built pickle with honest extents reads a transposed view correctly."""
    data = torch_like_pickle({"weight": ("0", 6, 0, (3, 2), (1, 3))}, monkeypatch)
    raw = np.arange(6, dtype=np.float32).tobytes()
    loaded = torch_files.load_state_dict(zip_file(tmp_path / "ok.pth", data, {"0": raw}))
    np.testing.assert_array_equal(loaded["weight"], np.arange(6.0).reshape(2, 3).T)


@pytest.mark.parametrize("root,message", [
    ([1, 2, 3], "holds a list, not a state_dict"),
    ({"a": 1}, "a is a int, not a tensor"),
    ({1: 2}, "non-text key"),
])
def test_non_state_dict_roots_are_refused(tmp_path, root, message):
    path = zip_file(tmp_path / "root.pth", pickle.dumps(root, protocol=2), {})
    with pytest.raises(WeightsFileError, match=message):
        torch_files.load_state_dict(path)


def test_truncated_garbage_and_empty_files_are_refused(tmp_path):
    good = torch_files.state_dict_bytes({"w": np.ones((4, 4), np.float32)})
    cases = {"truncated.pth": good[: len(good) // 2], "garbage.pth": os.urandom(4096),
             "empty.pth": b"", "text.pth": b"not weights\n" * 10}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(WeightsFileError, match=name):
            torch_files.load_state_dict(tmp_path / name)
    with pytest.raises(WeightsFileError, match="no such weights file"):
        torch_files.load_state_dict(tmp_path / "missing.pth")


def test_legacy_storage_beyond_the_end_is_refused(tmp_path, monkeypatch):
    state = torch_like_pickle({"w": ("0", 10**9, 0, (4,), (1,))}, monkeypatch)
    records = [LEGACY_MAGIC, 1001, {"little_endian": True}, state, ["0"]]
    path = legacy_file(tmp_path / "legacy.pth", records, struct.pack("<q", 10**9) + b"\x00" * 16)
    with pytest.raises(WeightsFileError, match="beyond the end of the file"):
        torch_files.load_state_dict(path)


def test_seeded_fuzz_of_valid_files_never_escapes_the_loader(tmp_path):
    """Bit flips and truncations of valid files (both formats): each loads or raises the
    loader's own error; nothing else escapes and the process survives."""
    bases = [torch_files.state_dict_bytes({"w": np.ones((3, 3, 2), np.float32),
                                             "b": np.arange(3, dtype=np.int64)})]
    bases += [Path(f"tests/data/tiny_state_{form}.pth").read_bytes() for form in ("zip", "legacy")]
    rng = np.random.default_rng(1234)
    outcomes = collections.Counter()
    for trial in range(300):
        data = bytearray(bases[trial % len(bases)])
        if trial % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 9))):
                position = int(rng.integers(0, len(data)))
                data[position] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / f"fuzz_{trial}.pth"
        path.write_bytes(bytes(data))
        try:
            loaded = torch_files.load_state_dict(path)
            assert all(isinstance(v, np.ndarray) for v in loaded.values())
            outcomes["loaded"] += 1
        except WeightsFileError:
            outcomes["refused"] += 1
    print(dict(outcomes))
    assert outcomes["refused"] > 100 and sum(outcomes.values()) == 300, outcomes


def test_safetensors_files_round_trip_and_refuse_damage(tmp_path):
    """generator.safetensors: written and read back bit for bit, its metadata in the header;
    a truncated, garbage or header-lying file is one WeightsFileError naming it."""
    import json
    import struct

    from p2p_jax.interop import safetensors_files

    tensors = {"model.0.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
               "model.1.bias": np.ones(3, np.float32)}
    data = safetensors_files.state_dict_bytes(tensors, {"p2p_jax_step": "7"})
    path = tmp_path / "g.safetensors"
    path.write_bytes(data)
    back = safetensors_files.load_state_dict(path)
    assert back.keys() == tensors.keys()
    for key, value in tensors.items():
        np.testing.assert_array_equal(back[key], value)
    header = json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])
    assert header["__metadata__"] == {"format": "pt", "p2p_jax_step": "7"}

    lying = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4e6]}})
    for name, bad in (("truncated", data[:40]), ("garbage", b"\x00" * 64),
                      ("lying", struct.pack("<Q", len(lying)) + lying.encode() + b"\x00" * 16)):
        (tmp_path / f"{name}.safetensors").write_bytes(bad)
        with pytest.raises(torch_files.WeightsFileError,
                           match=f"{name}.safetensors: not a usable safetensors file"):
            safetensors_files.load_state_dict(tmp_path / f"{name}.safetensors")
    with pytest.raises(torch_files.WeightsFileError, match="no such weights file"):
        safetensors_files.load_state_dict(tmp_path / "missing.safetensors")
