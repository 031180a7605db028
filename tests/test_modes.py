"""--mode=eval / predict / export on a briefly trained model: files, pages, round trips."""

import html.parser
import json
import os
import pathlib
import shutil

import cv2
import jax
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf

from p2p_jax.config.saved import saved_config
from p2p_jax.data import images
from p2p_jax.errors import UserError
from p2p_jax.eval import report, summaries
from p2p_jax.serving import export, predict, restore
from tests.helpers import png_bomb


@pytest.fixture
def trained(trained_tiny):
    """The shared 4-step tiny run (deterministic generation: every path to an output must agree
    exactly); read only."""
    return trained_tiny


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.rows = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        if tag == "tr" and "data-l1" in attrs:
            self.rows.append(float(attrs["data-l1"]))


def test_eval_mode_writes_a_consistent_report(trained, tmp_path):
    config, shared = trained
    workdir = str(tmp_path / "run")  # The report is written into the run: a copy of its own.
    shutil.copytree(shared, workdir)
    folder = report.evaluate_checkpoint(restore.restore(config, workdir), workdir)
    assert folder.name == "val_00000004"
    record = json.loads((folder / "metrics.json").read_text())
    assert record["num_examples"] == config.dataset.num_eval
    for name in ("l1", "psnr", "ssim"):
        assert record["metrics"][name] == pytest.approx(np.mean(record["per_image"][name]))
    page = _Links()
    page.feed((folder / "index.html").read_text())
    assert "curves.png" in page.sources and len(page.sources) == 1 + 3 * 4
    for source in page.sources:  # Every referenced file exists and decodes.
        assert images.read(str(folder / source)).size > 0
    assert page.rows == sorted(page.rows, reverse=True)  # Worst L1 first.
    sheet = images.read(str(folder / "contact_sheet.png"))
    assert sheet.shape[0] >= report.SHEET_MIN_HEIGHT and sheet.shape[2] == 3
    assert "train/g_loss" in summaries.read_scalars(workdir)


def test_contact_sheet_labels_its_columns_and_keeps_the_models_pixels():
    rng = np.random.default_rng(0)
    examples = [{"A": rng.integers(0, 256, (64, 48, 1), np.uint8),
                 "B": rng.integers(0, 256, (64, 48, 3), np.uint8)} for _ in range(5)]
    outputs = [rng.integers(0, 256, (64, 48, 3), np.uint8) for _ in range(5)]
    sheet = report.contact_sheet(examples, outputs)
    header = 22
    # 64 px shown at 128 by whole pixels: the first output, exactly, right of its input.
    top, left = header + 4, 4 + 96 + 2
    np.testing.assert_array_equal(sheet[top:top + 128, left:left + 96],
                                  outputs[0].repeat(2, 0).repeat(2, 1))
    np.testing.assert_array_equal(sheet[top:top + 128, 4:100],
                                  examples[0]["A"].repeat(2, 0).repeat(2, 1).repeat(3, 2))
    assert sheet.shape == (header + 2 * (128 + 8), 4 * (3 * 96 + 2 * 2 + 8), 3)
    for column in range(3):  # A name drawn above each of input, output, target.
        assert (sheet[:header, 4 + column * 98:4 + column * 98 + 40] < 128).any()
    # The first `limit` examples only: one row.
    assert report.contact_sheet(examples, outputs, limit=2).shape == (
        header + 128 + 8, 4 * (3 * 96 + 2 * 2 + 8), 3)
    large = [{"A": np.zeros((512, 1024, 3), np.uint8), "B": np.zeros((512, 1024, 3), np.uint8)}]
    assert report.contact_sheet(large, [np.zeros((512, 1024, 3), np.uint8)]).shape[0] == (
        header + report.SHEET_MAX_HEIGHT + 8)


def test_predict_keeps_names_and_sizes_and_skips_bad_files(trained, tmp_path):
    config, workdir = trained
    rng = np.random.default_rng(0)
    sizes = {"a.png": (32, 32), "nested/b.jpg": (45, 70), "c.png": (45, 70)}
    for name, (h, w) in sizes.items():
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        images.write(tmp_path / "in" / name, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG")
    model = restore.restore(config, workdir)
    inputs = predict.list_inputs(str(tmp_path / "in"), str(tmp_path / "out"))
    assert predict.predict(model, inputs) == 3
    for name, size in sizes.items():
        assert images.read(str(tmp_path / "out" / name)).shape == (*size, 3)
    assert not (tmp_path / "out" / "broken.png").exists()
    with pytest.raises(FileNotFoundError, match="neither an image file nor a folder"):
        predict.list_inputs(str(tmp_path / "missing"), str(tmp_path / "out"))


def test_predict_never_writes_over_or_inside_its_input(tmp_path):
    """Outputs keep their inputs' names: an --output that is the input's folder would replace
    the photos, one inside an input folder would be read back as input by the next run. Both
    are refused before any model loads; a sibling folder, or a file input's subfolder, is
    fine."""
    photos = tmp_path / "photos"
    images.write(photos / "x.png", np.zeros((8, 8, 3), np.uint8))
    os.symlink(photos, tmp_path / "link")
    refused = [(photos, photos, "is the folder of"), (photos, photos / "out", "is inside"),
               (photos / "x.png", photos, "write over the input images"),
               (photos, tmp_path / "link", "is the folder of"),  # The same folder by a link.
               (f"{photos}/", photos, "is the folder of")]
    for source, output, message in refused:
        with pytest.raises(UserError, match=message):
            predict.list_inputs(str(source), str(output))
    assert predict.list_inputs(str(photos), str(tmp_path / "out")).names == ["x.png"]
    assert predict.list_inputs(str(photos / "x.png"), str(photos / "out")).root == str(photos)
    assert (photos / "x.png").exists() and not (photos / "out").exists()


def test_predict_refuses_bombs_and_tiles_large_photos(trained, tmp_path, caplog):
    """Real photographs of odd sizes beside a decompression bomb: the photos are translated at
    their own sizes (the largest in overlapping tiles), the bomb is refused and named."""
    import skimage.data

    config, workdir = trained
    photos = {"astronaut.png": skimage.data.astronaut()[:45, :70],
              "sub/coffee.jpg": skimage.data.coffee()[:33, :61],
              "chelsea.png": skimage.data.chelsea()[:90, :75]}
    for name, photo in photos.items():
        images.write(tmp_path / "in" / name, photo)
    (tmp_path / "in" / "bomb.png").write_bytes(png_bomb(30000, 30000))
    config = config.copy_and_resolve_references()
    config.eval.tile_pixels = 3200  # 32x32 tiles: only chelsea (90x75) is over it.
    config.eval.tile_overlap = 8
    model = restore.restore(config, workdir)
    with caplog.at_level("INFO"):
        count = predict.predict(model,
                                predict.list_inputs(str(tmp_path / "in"), str(tmp_path / "out")))
    assert count == 3
    for name, photo in photos.items():
        assert images.read(str(tmp_path / "out" / name)).shape == photo.shape
    assert not (tmp_path / "out" / "bomb.png").exists()
    assert "bomb.png: more than" in caplog.text and "max_image_pixels" in caplog.text
    assert "chelsea.png: 75x90, over eval.tile_pixels=3200: translated in tiles" in caplog.text


def test_exports_are_portable_and_reproduce_predict(trained, tmp_path):
    """An export made on this CPU host holds XLA's own convolutions only (one per layer, no
    matmul rewrites) and gives predict's outputs, which run the CPU forms, up to rounding."""
    config, workdir = trained
    model = restore.restore(config, workdir)
    portable = restore.restore(config, workdir, conv_impl=export.portable_impl(config))
    assert model.generator.network.conv_impl == "cpu"
    out = export.export(portable, str(tmp_path / "export"), workdir)
    card = (out / "README.md").read_text()  # The model card: what, how trained, how well.
    periodic = json.loads((pathlib.Path(workdir) / "eval" / "periodic.json").read_text())
    assert [r["step"] for r in periodic] == [3, 4]
    reports = sorted(pathlib.Path(workdir).glob("eval/*_00000004/metrics.json"))  # Eval test's.
    latest = json.loads(reports[-1].read_text()) if reports else periodic[-1]
    assert f"| l1 | {latest['metrics']['l1']:.4g} |" in card
    assert "step 4" in card and "contact_sheet.png" in card and (out / "contact_sheet.png").exists()
    assert "Weights: the trained weights." in card
    assert "net.load_state_dict(load_file('generator.safetensors'))" in card
    assert saved_config(str(out)).to_dict() == saved_config(workdir).to_dict()
    module = jax.export.deserialize(bytearray((out / "generator.stablehlo").read_bytes()))
    text = module.mlir_module()
    assert text.count("stablehlo.convolution") == 2 * config.model.num_downs
    assert "dot_general" not in text
    batch = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    for i, image in enumerate(batch):
        images.write(tmp_path / "in" / f"{i}.png", image)
    predict.predict(model,
                    predict.list_inputs(str(tmp_path / "in"), str(tmp_path / "predicted")))
    predicted = np.stack([images.read(str(tmp_path / "predicted" / f"{i}.png"))
                          for i in range(3)])
    key = np.asarray(jax.random.key_data(jax.random.PRNGKey(0)), np.uint32)
    stablehlo = export.load_stablehlo(str(out))(batch, key)
    assert np.abs(stablehlo.astype(int) - predicted).max() <= 1  # Float forms, uint8 rounding.
    assert (stablehlo != predicted).mean() < 0.01
    saved = tf.saved_model.load(str(out / "saved_model"))
    served = saved.translate(tf.constant(batch), tf.constant(key)).numpy()
    assert served.dtype == np.uint8 and served.shape == batch.shape
    assert np.abs(served.astype(int) - predicted).max() <= 1  # TF vs XLA rounding.
    assert cv2.absdiff(served, predicted).mean() < 0.05
    session = onnxruntime.InferenceSession(str(out / "generator.onnx"))
    onnx_served = session.run(None, {"images": batch})[0]
    assert onnx_served.dtype == np.uint8 and onnx_served.shape == batch.shape
    assert np.abs(onnx_served.astype(int) - predicted).max() <= 1  # Within 1/255.
