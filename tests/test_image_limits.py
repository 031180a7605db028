"""Hostile images: decompression bombs are refused from their header, damaged files of every
format are bad files (never another exception), and large images are tiled, not refused."""

import resource

import cv2
import numpy as np
import pytest

from p2p_jax.data import images, pipeline, sources
from p2p_jax.models import tiles
from tests.helpers import png_bomb


def test_decompression_bomb_is_refused_from_its_header():
    bomb = png_bomb(30000, 30000)
    assert len(bomb) < 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(images.BadImageError,
                       match=r"bomb.png: more than 178956970 pixels, over "
                             r"dataset.max_image_pixels=100000000"):
        images.decode(bomb, "bomb.png")
    with pytest.raises(images.BadImageError,
                       match=r"b2.png: 15000x10000 is 150000000 pixels, over "
                             r"dataset.max_image_pixels=100000000"):
        images.decode(png_bomb(15000, 10000), "b2.png")
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 500_000  # Decoding it would take 2.7 GB.
    with pytest.raises(images.BadImageError, match="over dataset.max_image_pixels=100"):
        images.decode(images.encode(np.zeros((20, 20, 3), np.uint8)), "small.png",
                      max_pixels=100)


def test_bomb_among_training_files_is_skipped_and_counted(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(3):
        images.write(folder / f"{i}.png", np.full((16, 32, 3), 40 * i, np.uint8))
    (folder / "1_bomb.png").write_bytes(png_bomb(40000, 20000))
    source = pipeline.Examples(sources.aligned_folder(str(tmp_path), "train", "AtoB"))
    names = [source.name(i) for i in range(len(source))]
    assert names == ["0.png", "1.png", "1_bomb.png", "2.png"]
    example = source[2]  # The bomb's slot: the next readable file takes it, counted.
    assert int(example["skipped"]) == 1 and example["A"].shape == (16, 16, 3)


def encodings() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    out = {ext: cv2.imencode(ext, rgb)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".webp")}
    out[".tif"] = cv2.imencode(".tif", rng.integers(0, 65535, (24, 40, 3), dtype=np.uint16))[1]\
        .tobytes()
    out["gray16.png"] = cv2.imencode(".png", rng.integers(0, 65535, (24, 40), dtype=np.uint16))[1]\
        .tobytes()
    out["bands.tif"] = images.encode(rng.random((24, 40, 6), dtype=np.float32), ".tif")
    out["bands.npy"] = images.encode(rng.integers(0, 65535, (24, 40, 2), dtype=np.uint16),
                                     ".npy")
    return out


def test_seeded_fuzz_of_every_format_gives_images_or_bad_files():
    """Bit flips and truncations of PNG, JPEG, BMP, WebP, 16-bit TIFF/PNG, 6-band float TIFF
    and .npy files: each decodes to a (H, W, C) uint8, uint16 or float32 image or is a
    BadImageError; nothing else escapes."""
    rng = np.random.default_rng(7)
    counts = {"decoded": 0, "bad": 0}
    for name, original in encodings().items():
        for trial in range(50):
            data = bytearray(original)
            if trial % 2:
                data = data[: int(rng.integers(0, len(data)))]
            else:
                for _ in range(int(rng.integers(1, 6))):
                    data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
            try:
                image = images.decode(bytes(data), name)
            except images.BadImageError:
                counts["bad"] += 1
                continue
            assert image.dtype in (np.uint8, np.uint16, np.float32) and image.ndim == 3
            assert image.shape[2] in ((1, 3) if name.endswith(("png", "jpg", "bmp", "webp"))
                                      else (1, 2, 3, 6)), (name, image.shape)
            counts["decoded"] += 1
    assert counts["bad"] > 50 and sum(counts.values()) == 400, counts


def test_tiles_cover_the_image_and_blend_exactly():
    """A pointwise 'generator' through overlapping tiles gives exactly its whole-image result:
    every pixel is covered and the blend weights sum to one."""
    image = np.random.default_rng(3).integers(0, 256, (70, 131, 3), dtype=np.uint8)
    seen = []

    def invert(pieces, first):
        seen.append((first, len(pieces), pieces[0].shape))
        return [255 - piece[:, :, :1] for piece in pieces]

    out = tiles.translate_tiled(image, 32, 8, invert)
    np.testing.assert_array_equal(out, 255 - image[:, :, :1])
    assert seen[0] == (0, 6, (32, 32, 3)) and seen[-1][0] == 6 * (len(seen) - 1)
    assert tiles.starts(131, 32, 8) == [0, 20, 40, 59, 79, 99]
    assert tiles.starts(20, 32, 8) == [0]
    assert tiles.tile_side(5000, 32) == 64 and tiles.tile_side(100, 32) == 32


def test_only_regular_files_are_images(tmp_path):
    """A device, a FIFO or a link to one named like an image is never read (/dev/zero reads
    forever, a FIFO blocks): datasets and predict's inputs list regular files only."""
    import os

    from p2p_jax.serving import predict

    folder = tmp_path / "train"
    folder.mkdir()
    images.write(folder / "0.png", np.zeros((16, 32, 3), np.uint8))
    os.symlink("/dev/zero", folder / "1.png")
    os.mkfifo(folder / "2.png")
    source = pipeline.Examples(sources.aligned_folder(str(tmp_path), "train", "AtoB"))
    assert [source.name(i) for i in range(len(source))] == ["0.png"]
    assert predict.list_inputs(str(folder), str(tmp_path / "out")).names == ["0.png"]
    for path in ("/dev/zero", folder / "1.png", folder / "2.png"):
        with pytest.raises(FileNotFoundError, match="neither an image file nor a folder"):
            predict.list_inputs(str(path), str(tmp_path / "out"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_photos_are_turned_upright_by_their_exif_orientation(orientation):
    """A phone photo stores its pixels sideways and says so in EXIF: decoded as viewers (and
    PIL's exif_transpose) show it."""
    import io

    from PIL import Image, ImageOps

    rgb = np.random.default_rng(orientation).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    stored = Image.fromarray(rgb)
    exif = stored.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "PNG", exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))
    decoded = images.decode(buffer.getvalue(), "phone.png")
    np.testing.assert_array_equal(decoded, upright)
    assert decoded.shape[:2] == ((24, 16) if orientation >= 5 else (16, 24))
