"""Helpers shared by the tests: state comparison, hostile files."""

import fcntl
import os
import pathlib
import struct
import zlib

import cv2
import jax
import numpy as np

# Tests compile hundreds of tiny programs and run each a few times: XLA's backend optimisation
# (LLVM's passes over the generated loops) costs more than it saves there, about 5x in compile
# time. Every test process compiles alike, so equal-bits comparisons stay like for like.
FAST_COMPILE_XLA_FLAG = "--xla_backend_optimization_level=0"


def xla_flags(devices: int) -> str:
    """XLA_FLAGS for a test process: `devices` fake CPU devices, compiled as every test is
    (the optimisation level the caller's XLA_FLAGS names, if any, else the fast one)."""
    inherited = os.environ.get("XLA_FLAGS", "")
    level = next((flag for flag in inherited.split()
                  if flag.startswith("--xla_backend_optimization_level=")), FAST_COMPILE_XLA_FLAG)
    return f"{level} --xla_force_host_platform_device_count={devices}"


def assert_states_match(a, b, tight: float = 2e-5, loose: float = 5e-4) -> None:
    """Equal up to float reassociation: nearly every element within `tight`, all within `loose`.

    Adam divides by sqrt(v), so where a gradient is ~0 a reordered sum can move one element by
    a noticeable part of a learning-rate step; that is reassociation, not a different update.
    """
    def check(x, y):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        np.testing.assert_allclose(x, y, rtol=0, atol=loose)
        assert np.mean(np.abs(x - y) > tight + 1e-3 * np.abs(y)) < 1e-3

    jax.tree.map(check, a, b)


def png_bomb(width: int, height: int, rows: int = 64) -> bytes:
    """A PNG whose header claims width x height RGB pixels; its few rows of zeros compress to
    almost nothing (a decoder that trusts the header allocates the whole image first)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * (rows * (1 + 3 * width)), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


def fixed_schedule(config, num_steps):
    """`num_steps` of training on a schedule detached from the run length, so runs of
    different lengths share one schedule (resume tests)."""
    config.num_train_steps = num_steps
    config.optimizer.constant_steps = 4
    config.optimizer.decay_steps = 4
    return config


def colour_segmenter(photos):
    """A stand-in for a trained FCN: each pixel's class is its nearest class colour."""
    import jax.numpy as jnp

    from p2p_jax.data import cityscapes

    colours = jnp.asarray(cityscapes.TRAIN_COLOURS, jnp.float32)
    x = photos.astype(jnp.float32)[..., None, :]
    return -jnp.sum((x - colours) ** 2, axis=-1)  # (N, H, W, 19) scores


def write_segmenter(path) -> str:
    """`colour_segmenter` as the jax.export artefact `eval.fcn_model` expects."""
    import jax.numpy as jnp

    exported = jax.export.export(jax.jit(colour_segmenter))(
        jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, h, w, 3"), jnp.uint8))
    path.write_bytes(exported.serialize())
    return str(path)


def write_png(path, image):
    """Writes with OpenCV as given (BGR order, any bit depth), making the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def write_aligned(folder, count, height=8, width=16):
    """`count` pix2pix aligned files (A | B side by side) in `folder`, A's shade by index."""
    for i in range(count):
        ab = np.zeros((height, width, 3), np.uint8)
        ab[:, :width // 2] = 10 * i
        ab[:, width // 2:] = 200
        write_png(folder / f"{i}.png", ab)


def write_cityscapes(root, split="train", frames=3, height=32, width=64, seed=0):
    """A tiny Cityscapes release: label ids (road, car, sky, ...), instance ids (cars as
    26000+k, stuff as its label id) and photos coloured by class, in the official layout."""
    rng = np.random.default_rng(seed)
    for i in range(frames):
        city = ("aachen", "bochum")[i % 2]
        frame = f"{city}_{i:06d}_000019"
        labels = np.full((height, width), 23, np.uint8)  # sky
        labels[height // 2:] = 7  # road
        instances = labels.astype(np.uint16)
        for k in range(2):  # two cars
            top = height // 2 + int(rng.integers(0, height // 4))
            left = int(rng.integers(0, width - 12))
            labels[top:top + 6, left:left + 10] = 26
            instances[top:top + 6, left:left + 10] = 26000 + k
        photo = np.zeros((height, width, 3), np.uint8)
        for label, colour in ((23, (180, 130, 70)), (7, (128, 64, 128)), (26, (142, 0, 0))):
            photo[labels == label] = colour
        photo = np.clip(photo + rng.integers(0, 20, photo.shape), 0, 255).astype(np.uint8)
        gt = root / "gtFine" / split / city
        write_png(gt / f"{frame}_gtFine_labelIds.png", labels)
        write_png(gt / f"{frame}_gtFine_instanceIds.png", instances)
        write_png(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png", photo)
    return root


# torchvision's vgg19 `features` up to relu5_1 (cfg "E"): conv channels, "M" a max pool.
VGG19_FEATURES = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                  512)


def vgg19_layers():
    """(index in torchvision's `features`, channels or "M") up to relu5_1 (index 29)."""
    layers, index = [], 0
    for item in VGG19_FEATURES:
        layers.append((index, item))
        index += 1 if item == "M" else 2
    return layers


def write_vgg19_weights(path, seed=0):
    """A random-weight VGG19 `features` state_dict in torchvision's key layout (what
    vgg19-dcbb9e9d.pth holds, classifier and the layers past relu5_1 left out)."""
    from p2p_jax.interop import torch_files

    rng = np.random.default_rng(seed)
    state, channels = {}, 3
    for index, out in vgg19_layers():
        if out == "M":
            continue
        scale = np.sqrt(2.0 / (9 * channels))
        state[f"features.{index}.weight"] = (rng.normal(size=(out, channels, 3, 3)) * scale
                                             ).astype(np.float32)
        state[f"features.{index}.bias"] = rng.normal(scale=0.01, size=out).astype(np.float32)
        channels = out
    path.write_bytes(torch_files.state_dict_bytes(state))
    return str(path)


def register_ram_scheme(monkeypatch):
    """Lets etils.epath (the product's file layer) open `ram://` paths through the same
    TensorFlow gfile backend it uses for gs://: TF's in-process file system, for tests that
    exercise the bucket code path without a bucket."""
    from etils.epath import backend, gpath, register

    monkeypatch.setattr(gpath, "_URI_PREFIXES", (*gpath._URI_PREFIXES, "ram://"))
    monkeypatch.setattr(gpath, "_URI_SCHEMES", gpath._URI_SCHEMES | {"ram"})
    monkeypatch.setitem(gpath._URI_MAP_ROOT, "ram://", "/ram/")
    monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "ram", backend.tf_backend)
    register.register_path_cls("ram://")(gpath.PosixGPath)


def copy_tree(source, target: str) -> None:
    """A local folder into `target` (any path the file layer speaks), file by file."""
    from p2p_jax import fileio

    for path in sorted(source.rglob("*")):
        if path.is_file():
            fileio.write_bytes(f"{target}/{path.relative_to(source).as_posix()}",
                               path.read_bytes())


def once_per_test_run(tmp_path_factory, worker_id: str, name: str, make) -> pathlib.Path:
    """ROOT/name, made by `make(path)` once per test run whichever xdist worker asks first
    (the other waits on a lock, then finds it done); module fixtures would be made again
    wherever xdist tears them down between a worker's batches."""
    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent  # One folder per test run.
    path, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            make(path)
            done.touch()
    return path


def trained_tiny_config():
    """The run the shared `trained_tiny` fixture trains: 4 steps of the tiny config with
    deterministic generation (running statistics, no dropout), so every path to an output
    agrees exactly; two serve examples and a pixel limit that refuses a 2000x2000 upload."""
    from configs import tiny

    config = tiny.get_config()
    config.batch_size = 8
    config.num_train_steps = 4
    config.model.eval_mode = True
    config.serve.num_examples = 2
    config.dataset.max_image_pixels = 200_000
    return config
