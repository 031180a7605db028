"""Image decoding, channel and pixel-type conversion, resizing and writing (OpenCV for photo
formats: fast, GIL-free; tifffile for TIFF; NumPy for .npy).

Decoding is lossless: photos (PNG, JPEG, BMP, WebP) become (H, W, 1|3) uint8 or uint16 RGB or
gray, alpha dropped (said once in the log); TIFF (multi-sample and multi-page as channels) and
.npy arrays (H, W) or (H, W, C) keep every channel and their values, as uint8, uint16 or
float32 (other integer and float types as float32). `data/values.py` says what the values
mean; `write` picks a format that holds each image's dtype and channels.
"""

from __future__ import annotations

import io
import logging as py_logging
import warnings

import cv2
import numpy as np
import tifffile
from absl import logging
from etils import epath
from PIL import Image

from p2p_jax import fileio
from p2p_jax.config import choices
from p2p_jax.data import values

# Bad files are reported once each by the pipeline; OpenCV's own per-decode warnings would
# repeat them on stderr every epoch.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
py_logging.getLogger("tifffile").setLevel(py_logging.CRITICAL)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".npy")
# Formats that hold any channel count and dtype; photo formats hold 1 or 3 channels (and
# PNG 16 bits).
DATA_EXTENSIONS = (".tif", ".tiff", ".npy")
# Images of more pixels are refused before decoding (`dataset.max_image_pixels`): a few MB of
# PNG can decode to tens of GB. PIL, which reads the header, refuses over this on its own.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_LIMIT = choices.MAX_IMAGE_PIXELS
assert MAX_PIXELS_LIMIT == 2 * Image.MAX_IMAGE_PIXELS, "PIL's threshold moved; update choices"


class BadImageError(ValueError):
    """A file that cannot be used as an image; the message names it and why."""


def _header(data: bytes, name: str, max_pixels: int) -> tuple[int, int, int]:
    """(height, width, EXIF orientation 1..8; 1 when none) as stored, from the file's header
    alone, without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Bomb and corrupt-EXIF warnings: decided below.
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                orientation = _orientation(image)
    except Image.DecompressionBombError:
        raise BadImageError(f"{name}: more than {MAX_PIXELS_LIMIT} pixels, over "
                            f"dataset.max_image_pixels={max_pixels}") from None
    except Exception as e:  # PIL raises many types for damaged headers.
        raise BadImageError(f"{name}: not a readable image ({type(e).__name__})") from None
    return height, width, orientation


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # A damaged EXIF block is no orientation, not a bad image.
        return 1
    return value if value in _ORIENTED else 1


# EXIF orientation -> the transform that shows the stored pixels upright (as PIL's
# ImageOps.exif_transpose and every photo viewer do): phone photos store them sideways.
_EXIF_ORIENTATION = 0x0112
_ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _decode_checked(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, int]:
    """OpenCV's decoding as stored (IMREAD_UNCHANGED), after the header's size check, and the
    EXIF orientation; every failure a BadImageError."""
    if not data:
        raise BadImageError(f"{name}: empty file")
    height, width, orientation = _header(data, name, max_pixels)
    _check_size(name, height, width, 1, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise BadImageError(f"{name}: not decodable ({str(e).strip().splitlines()[-1]})") from None
    if image is None or image.size == 0:
        raise BadImageError(f"{name}: not a readable image (truncated or not an image format)")
    return image, orientation


def decode(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded bytes -> (H, W, C) uint8, uint16 or float32, without loss (see the module).

    The size is checked from the header first, so an image of over `max_pixels` (a
    decompression bomb) costs no memory; it is a BadImageError like any unreadable file. A
    photo is turned upright by its EXIF orientation, as viewers show it."""
    if data[:6] == _NPY_MAGIC:
        return _decode_npy(data, name, max_pixels)
    if data[:4] in _TIFF_MAGIC:
        return _decode_tiff(data, name, max_pixels)
    image, orientation = _decode_checked(data, name, max_pixels)
    image = np.ascontiguousarray(_ORIENTED[orientation](image))
    if image.shape[0] * image.shape[1] > max_pixels:  # A header that lied about the size.
        raise BadImageError(f"{name}: decodes to {image.shape[1]}x{image.shape[0]}, over "
                            f"dataset.max_image_pixels={max_pixels}")
    return standardize(image, name)


_NPY_MAGIC = b"\x93NUMPY"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # Classic and BigTIFF.
# Channels (pages, samples) per pixel a data file may hold; more is a refused file, like a
# decompression bomb.
MAX_CHANNELS = 1024


def _check_size(name: str, height: int, width: int, channels: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise BadImageError(f"{name}: {width}x{height} is {height * width} pixels, over "
                            f"dataset.max_image_pixels={max_pixels}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadImageError(f"{name}: {channels} channels; at most {MAX_CHANNELS}")


def _decode_npy(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """A .npy array (H, W) or (H, W, C), its header checked before the data is read; never
    pickled objects."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(buffer) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(buffer))
    except Exception as e:  # ValueError for most damage; others for odd headers.
        raise BadImageError(f"{name}: not a readable .npy file ({type(e).__name__})") from None
    if len(shape) not in (2, 3) or dtype.hasobject:
        raise BadImageError(f"{name}: a .npy image is a numeric (H, W) or (H, W, C) array; "
                            f"this is {dtype} {shape}")
    _check_size(name, shape[0], shape[1], shape[2] if len(shape) == 3 else 1, max_pixels)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # Truncated data.
        raise BadImageError(f"{name}: not a readable .npy file ({type(e).__name__})") from None
    return _channels_last(as_data(np.ascontiguousarray(array), name))


def _decode_tiff(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """A TIFF's first series with every axis but Y and X as channels (samples, pages, Z, C,
    T), in the order stored; the shape is checked before the pixels are decoded."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            if "Y" not in axes or "X" not in axes:
                raise BadImageError(f"{name}: a TIFF without Y and X axes ({axes})")
            height, width = shape[axes.index("Y")], shape[axes.index("X")]
            _check_size(name, height, width, int(np.prod(shape)) // max(height * width, 1),
                        max_pixels)
            array = series.asarray()
            orientation = tif.pages[0].tags.get("Orientation")
        if array.shape != tuple(shape):  # Damaged strips: tifffile returns what it could.
            raise ValueError(f"decoded {array.shape}, not the stored {tuple(shape)}")
    except BadImageError:
        raise
    except Exception as e:  # tifffile raises many types for damaged or unsupported files.
        raise BadImageError(f"{name}: not a readable TIFF ({type(e).__name__}: "
                            f"{str(e)[:120]})") from None
    rest = [i for i, axis in enumerate(axes) if axis not in "YX"]
    array = np.transpose(array, [axes.index("Y"), axes.index("X"), *rest])
    array = array.reshape(height, width, -1)
    value = int(orientation.value) if orientation is not None else 1
    array = _ORIENTED.get(value, _ORIENTED[1])(array)
    return as_data(np.ascontiguousarray(array), name)


def _channels_last(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image


# Decoded types held as float32 without loss of anything a network uses (16-bit signed CT,
# float64 arrays, masks).
_AS_FLOAT32 = (np.int8, np.int16, np.uint32, np.int32, np.float16, np.float64, np.bool_)


def as_data(image: np.ndarray, name: str) -> np.ndarray:
    """A decoded array in a dtype the pipeline holds: uint8, uint16 and float32 as they are;
    other integer and float types as float32 (logged once); others refused."""
    if image.dtype in (np.uint8, np.uint16, np.float32):
        return image
    if image.dtype in _AS_FLOAT32:
        logging.log_first_n(logging.INFO, "%s images (first: %s) are held as float32", 1,
                            image.dtype, name)
        return image.astype(np.float32)
    raise BadImageError(f"{name}: pixel type {image.dtype} is not supported; use uint8, "
                        "uint16 or float32")


def convert(image: np.ndarray, dtype: str, name: str) -> np.ndarray:
    """An image in another dataset dtype, keeping what its values mean: uint8 -> uint16 is
    x * 257, a uint -> float32 its dtype's range as 0..1, uint16 -> uint8 rounded (lossy;
    logged once). Float data never becomes an integer type: a BadImageError naming the fix."""
    have = image.dtype.name
    if have == dtype:
        return image
    if dtype == "float32":
        return image.astype(np.float32) / np.float32(values.DTYPE_RANGES[have][1])
    if have == "float32":
        raise BadImageError(f"{name}: float32 values in a {dtype} dataset side; set "
                            "dataset.input_dtype / output_dtype to float32")
    if dtype == "uint16":
        return image.astype(np.uint16) * np.uint16(257)
    logging.log_first_n(logging.INFO, "16-bit images (first: %s) are reduced to 8 bits (the "
                        "dataset side is uint8)", 1, name)
    return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def decode_map(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A label or instance map (PNG of class or instance ids, 8 or 16 bit, one channel) ->
    (H, W) integers as stored: never scaled or converted like a photo."""
    ids, _ = _decode_checked(data, name, max_pixels)  # Maps are ids as stored.
    if ids.ndim == 3 and ids.shape[2] == 1:
        ids = ids[:, :, 0]
    if ids.ndim != 2 or ids.dtype not in (np.uint8, np.uint16, np.int32):
        raise BadImageError(f"{name}: a label or instance map must be one channel of 8- or "
                            f"16-bit ids; this is {ids.dtype} {ids.shape}")
    return ids


def standardize(image: np.ndarray, name: str, bgr: bool = True) -> np.ndarray:
    """A decoded photo, (H, W) or (H, W, 1|3|4), BGR(A) as OpenCV decodes or RGB(A), of 8 or
    16 bits -> RGB or gray (H, W, C) of the same bits; alpha dropped."""
    if image.dtype not in (np.uint8, np.uint16):
        raise BadImageError(f"{name}: unsupported pixel type {image.dtype} for a photo format; "
                            "use 8 or 16 bit, or TIFF / .npy for other types")
    if image.ndim == 2:
        return image[:, :, None]
    if image.shape[2] == 4:
        logging.log_first_n(logging.INFO, "alpha channels (first: %s) are dropped", 1, name)
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image
    if image.shape[2] == 1:
        return image
    raise BadImageError(f"{name}: {image.shape[2]} channels in a photo format; expected 1, 3 "
                        "or 4 (use TIFF or .npy for other channel counts)")


def read(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    try:
        data = fileio.read_bytes(path)
    except Exception as e:  # OSError locally; TensorFlow's gfile errors for gs://.
        raise BadImageError(f"{path}: {getattr(e, 'strerror', None) or e}") from e
    return decode(data, path, max_pixels)


def holds(extension: str, image: np.ndarray) -> bool:
    """Whether the format of `extension` holds `image`'s dtype and channels without loss."""
    extension = extension.lower()
    if extension in DATA_EXTENSIONS:
        return True
    photo = image.shape[2] in (1, 3)
    if extension == ".png":
        return photo and image.dtype in (np.uint8, np.uint16)
    return photo and image.dtype == np.uint8 and extension in (".jpg", ".jpeg", ".bmp",
                                                                ".webp")


def lossless_extension(extension: str, image: np.ndarray) -> str:
    """`extension` if its format holds `image` (JPEG and WebP: lossy, but what a photo input
    asks for), else .png for 16-bit photos and .tif for any other data."""
    if holds(extension, image):
        return extension
    return ".png" if image.dtype == np.uint16 and image.shape[2] in (1, 3) else ".tif"


def encode(image: np.ndarray, extension: str = ".png") -> bytes:
    """(H, W, C) -> the file format of `extension`: photo formats take uint8 RGB or gray
    (PNG also 16-bit; JPEG at quality 95); TIFF any channels and dtype (zlib-compressed,
    channels as samples); .npy the array itself."""
    extension = extension.lower()
    if not holds(extension, image):
        raise ValueError(f"{extension} cannot hold a {image.shape[2]}-channel {image.dtype} "
                         "image; use .tif or .npy")
    if extension in (".tif", ".tiff"):
        out = io.BytesIO()
        if image.shape[2] == 1:
            tifffile.imwrite(out, image[:, :, 0], photometric="minisblack", compression="zlib")
        else:
            tifffile.imwrite(out, image, photometric="minisblack", planarconfig="contig",
                             compression="zlib")
        return out.getvalue()
    if extension == ".npy":
        out = io.BytesIO()
        np.save(out, image, allow_pickle=False)
        return out.getvalue()
    bgr = image if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if extension in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(extension, bgr, params)
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as {extension}")
    return data.tobytes()


def write(path: str | epath.Path, image: np.ndarray) -> None:
    """Writes atomically in the format the extension names; local paths and gs:// alike."""
    path = epath.Path(path)
    fileio.write_bytes(path, encode(image, path.suffix or ".png"))


def to_channels(image: np.ndarray, channels: int, name: str = "an image") -> np.ndarray:
    """Gray <-> RGB as needed (luminance by ITU-R 601, as PIL's "L"); other channel counts
    must already match (a BadImageError naming the image otherwise)."""
    if image.shape[2] == channels:
        return image
    if channels == 1 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    if channels == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    raise BadImageError(f"{name}: {image.shape[2]} channels, but this side of the model takes "
                        f"{channels} (dataset.input_channels / output_channels)")


_INTERPOLATIONS = {"area": cv2.INTER_AREA, "bicubic": cv2.INTER_CUBIC,
                   "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


def resize_nearest(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a map of ids (any integer dtype, (H, W) or (H, W, C)):
    output pixel (i, j) takes the input pixel under its centre, as PIL's NEAREST."""
    if ids.shape[:2] == (height, width):
        return ids
    rows = np.minimum(((np.arange(height) + 0.5) * ids.shape[0] / height).astype(np.int64),
                      ids.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * ids.shape[1] / width).astype(np.int64),
                      ids.shape[1] - 1)
    return ids[rows[:, None], cols[None, :]]


def resize(image: np.ndarray, height: int, width: int, shrink: str = "area") -> np.ndarray:
    """Bicubic when enlarging (the reference's interpolation); `shrink` when reducing.

    `area` averaging is what bicubic with antialiasing (PIL, the reference) approximates when
    downscaling; plain OpenCV bicubic would alias.
    """
    if image.shape[:2] == (height, width):
        return image
    shrinking = height < image.shape[0] or width < image.shape[1]
    interpolation = _INTERPOLATIONS[shrink] if shrinking else cv2.INTER_CUBIC
    out = cv2.resize(image, (width, height), interpolation=interpolation)
    return out[:, :, None] if out.ndim == 2 else out

