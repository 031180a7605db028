"""Datasets, predict inputs and outputs, and exports on a bucket path: through `ram://`
(TensorFlow's in-process file system, which etils.epath reaches through the same gfile backend
it uses for gs://), every folder layout reads the same records as on local disk, a run trained
from the bucket sees the local run's batches, predict and export write there, and ArrayRecord shards
are staged to local disk once."""

import numpy as np
import pytest

from configs import tiny
from p2p_jax import checkpointing, fileio
from p2p_jax.data import convert, images, pipeline, sources
from p2p_jax.interop import torch_files
from p2p_jax.serving import export, predict, restore
from p2p_jax.train import loop
from tests.helpers import copy_tree, register_ram_scheme, write_aligned, write_png


@pytest.fixture
def bucket(monkeypatch, request):
    register_ram_scheme(monkeypatch)
    return f"ram://bucket_{request.node.name[:40]}"


def records(source):
    return [(source.name(i), source.record(i)) for i in range(len(source))]


def test_every_folder_layout_reads_the_same_from_the_bucket(tmp_path, bucket):
    write_aligned(tmp_path / "aligned" / "train", 3)
    for side in ("A", "B"):
        for i in range(2):
            write_png(tmp_path / "paired" / side / "train" / f"{i}.png",
                      np.full((8, 8, 3), 40 * i + (side == "B"), np.uint8))
    copy_tree(tmp_path, bucket)
    for make in (lambda root: sources.aligned_folder(f"{root}/aligned", "train", "AtoB"),
                 lambda root: sources.paired_folder(f"{root}/paired", "train", "AtoB"),
                 lambda root: sources.image_folder(f"{root}/aligned", "train")):
        local, remote = make(str(tmp_path)), make(bucket)
        assert remote.where.startswith("ram://")
        assert records(local) == records(remote)
        for key, value in local[1].items():
            np.testing.assert_array_equal(value, remote[1][key])


def test_weights_files_read_from_the_bucket(bucket):
    local = "tests/data/torch_models/hd_global.pth"
    fileio.write_bytes(f"{bucket}/g.pth", fileio.read_bytes(local))
    remote = torch_files.load_state_dict(f"{bucket}/g.pth")
    for key, value in torch_files.load_state_dict(local).items():
        np.testing.assert_array_equal(remote[key], value)
    with pytest.raises(torch_files.WeightsFileError, match="no such weights file"):
        torch_files.load_state_dict(f"{bucket}/missing.pth")


def test_array_record_shards_are_staged_to_local_disk_once(tmp_path, bucket, monkeypatch):
    write_aligned(tmp_path / "aligned" / "train", 5)
    convert.convert(str(tmp_path / "aligned"), str(tmp_path / "shards"), "aligned", 2)
    convert.convert(str(tmp_path / "aligned"), f"{bucket}/shards", "aligned", 2)  # Written there.
    for shard in (tmp_path / "shards").iterdir():
        assert fileio.read_bytes(f"{bucket}/shards/{shard.name}") == shard.read_bytes()
    config = tiny.get_config()
    config.dataset.source, config.dataset.path = "array_record", f"{bucket}/shards"
    with pytest.raises(sources.DatasetError, match="set dataset.stage_to_local=DIR"):
        sources.make_source(config.dataset, "train", 0)
    config.dataset.stage_to_local = str(tmp_path / "staged")
    copies = []
    real_copy = fileio.copy
    monkeypatch.setattr(fileio, "copy", lambda *args: copies.append(args) or real_copy(*args))
    staged = sources.make_source(config.dataset, "train", 0)
    assert len(copies) == 3
    sources.make_source(config.dataset, "train", 0)  # A second process / restart keeps them.
    assert len(copies) == 3
    local = sources.ArrayRecordPairs(str(tmp_path / "shards"), "train", "AtoB")
    assert [staged.name(i) for i in range(5)] == [local.name(i) for i in range(5)]
    assert not list((tmp_path / "staged").glob("*.tmp"))


@pytest.mark.slow
def test_train_predict_and_export_from_and_to_the_bucket_equal_local_disk(tmp_path, bucket):
    write_aligned(tmp_path / "data" / "train", 8, height=32, width=64)
    write_aligned(tmp_path / "data" / "val", 4, height=32, width=64)
    copy_tree(tmp_path / "data", f"{bucket}/data")
    configs = {}
    for where, data in (("local", str(tmp_path / "data")), ("bucket", f"{bucket}/data")):
        config = tiny.get_config()
        config.batch_size, config.num_train_steps = 8, 2
        config.dataset.source, config.dataset.path = "aligned", data
        config.dataset.load_size = 32
        config.export.formats = ("stablehlo", "torch")
        configs[where] = config
    batches = [next(pipeline.create_train_iterator(configs[w], 0, 1)) for w in configs]
    for key in ("A", "B"):
        np.testing.assert_array_equal(batches[0][key], batches[1][key])
    config, workdir = configs["bucket"], str(tmp_path / "work")
    loop.train_and_evaluate(config, workdir)
    assert int(checkpointing.load_train_state(workdir)["step"]) == 2
    write_png(tmp_path / "inputs" / "sub" / "odd.png",
              np.random.default_rng(0).integers(0, 256, (21, 35, 3), dtype=np.uint8))
    copy_tree(tmp_path / "inputs", f"{bucket}/inputs")
    restored = restore.restore(config, workdir)
    predict.predict(restored, predict.list_inputs(f"{bucket}/inputs", f"{bucket}/outputs"))
    predict.predict(restored,
                    predict.list_inputs(str(tmp_path / "inputs"), str(tmp_path / "outputs")))
    np.testing.assert_array_equal(images.read(f"{bucket}/outputs/sub/odd.png"),
                                  images.read(str(tmp_path / "outputs" / "sub" / "odd.png")))
    portable = restore.restore(config, workdir, conv_impl="xla")
    export.export(portable, f"{bucket}/export", workdir)
    export.export(portable, str(tmp_path / "export"), workdir)
    for name in ("generator.pth", "generator_variables.msgpack"):
        assert fileio.read_bytes(f"{bucket}/export/{name}") == (
            tmp_path / "export" / name).read_bytes()


def test_eval_curves_are_written_to_the_bucket(bucket):
    from etils import epath

    from p2p_jax.eval import report

    path = epath.Path(bucket) / "eval" / "val_00000004" / "curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    assert report.write_curves({"train/g_l1": [(1, 0.5), (2, 0.4)]}, path)
    curves = images.read(str(path))
    assert curves.ndim == 3 and curves.shape[0] > 100
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]  # No staging file left.
