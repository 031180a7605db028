"""Image decoding, channel conversion and resizing on uint8 HWC arrays (OpenCV: fast, GIL-free).

Every decoded image is uint8 with shape (H, W, 1) or (H, W, 3): 16-bit images are scaled to 8
bits and alpha channels dropped (each said once in the log), so the rest of the pipeline sees
one format whatever the files hold.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from absl import logging
from etils import epath
from PIL import Image

from p2p_jax import fileio
from p2p_jax.config import choices

# Bad files are reported once each by the pipeline; OpenCV's own per-decode warnings would
# repeat them on stderr every epoch.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
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
    if height * width > max_pixels:
        raise BadImageError(f"{name}: {width}x{height} is {height * width} pixels, over "
                            f"dataset.max_image_pixels={max_pixels}")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise BadImageError(f"{name}: not decodable ({str(e).strip().splitlines()[-1]})") from None
    if image is None or image.size == 0:
        raise BadImageError(f"{name}: not a readable image (truncated or not an image format)")
    return image, orientation


def decode(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded bytes (PNG, JPEG, TIFF, BMP, WebP; 8 or 16 bit; 1, 3 or 4 channels) -> uint8.

    The size is checked from the header first, so an image of over `max_pixels` (a
    decompression bomb) costs no memory; it is a BadImageError like any unreadable file. A
    photo is turned upright by its EXIF orientation, as viewers show it."""
    image, orientation = _decode_checked(data, name, max_pixels)
    image = np.ascontiguousarray(_ORIENTED[orientation](image))
    if image.shape[0] * image.shape[1] > max_pixels:  # A header that lied about the size.
        raise BadImageError(f"{name}: decodes to {image.shape[1]}x{image.shape[0]}, over "
                            f"dataset.max_image_pixels={max_pixels}")
    return standardize(image, name)


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
    """A decoded array of any bit depth, (H, W) or (H, W, 1|3|4), BGR(A) as OpenCV decodes
    or RGB(A) -> RGB or gray uint8 (H, W, C)."""
    if image.dtype == np.uint16:
        logging.log_first_n(logging.INFO, "16-bit images (first: %s) are scaled to 8 bits", 1,
                            name)
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadImageError(f"{name}: unsupported pixel type {image.dtype}; use 8 or 16 bit")
    if image.ndim == 2:
        return image[:, :, None]
    if image.shape[2] == 4:
        logging.log_first_n(logging.INFO, "alpha channels (first: %s) are dropped", 1, name)
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image
    if image.shape[2] == 1:
        return image
    raise BadImageError(f"{name}: {image.shape[2]} channels; expected 1, 3 or 4")


def read(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    try:
        data = fileio.read_bytes(path)
    except Exception as e:  # OSError locally; TensorFlow's gfile errors for gs://.
        raise BadImageError(f"{path}: {getattr(e, 'strerror', None) or e}") from e
    return decode(data, path, max_pixels)


def encode(image: np.ndarray, extension: str = ".png") -> bytes:
    """uint8 RGB or gray (H, W, C) -> the file format of `extension` (JPEG at quality 95)."""
    bgr = image if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if extension.lower() in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(extension, bgr, params)
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as {extension}")
    return data.tobytes()


def write(path: str | epath.Path, image: np.ndarray) -> None:
    """Writes atomically in the format the extension names; local paths and gs:// alike."""
    path = epath.Path(path)
    fileio.write_bytes(path, encode(image, path.suffix or ".png"))


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Gray <-> RGB as needed (luminance by ITU-R 601, as PIL's "L")."""
    if image.shape[2] == channels:
        return image
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    if channels == 3:
        return np.repeat(image, 3, axis=2)
    raise ValueError(f"cannot convert a {image.shape[2]}-channel image to {channels} channels")


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

