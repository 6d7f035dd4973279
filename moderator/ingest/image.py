"""Image decoding with a byte cap, a pixel cap and a format allowlist (HEIF and AVIF included).

The header is read first and the pixel count checked before any pixel is
decoded, so a decompression bomb costs a few hundred bytes of parsing.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pi_heif
from PIL import Image, UnidentifiedImageError

from moderator.config import DecodeLimits
from moderator.errors import InvalidPostError, ReasonCode

# HEIC/HEIF from phone cameras, through libheif. pi-heif is the decode-only build of
# pillow-heif: no HEVC encoder (x265 is GPL) in the wheel. Pillow decodes AVIF itself.
pi_heif.register_heif_opener()


def decode_image(data: bytes, limits: DecodeLimits, size: int) -> np.ndarray:
    """Decode `data` to a ``size`` x ``size`` RGB uint8 array, or raise InvalidPostError."""
    return decode_image_views(data, limits, size)[0]


def decode_image_views(
    data: bytes, limits: DecodeLimits, size: int, reading_side: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The classifier's ``size`` x ``size`` RGB array and, when `reading_side` is given, a
    reading copy for OCR: RGB, aspect kept, longest side at most `reading_side` (never
    enlarged). One decode serves both; raises InvalidPostError."""
    if len(data) > limits.max_image_bytes:
        raise InvalidPostError(
            ReasonCode.IMAGE_TOO_LARGE,
            f"image is {len(data)} bytes, limit {limits.max_image_bytes}",
        )
    if not data:
        raise InvalidPostError(ReasonCode.IMAGE_CORRUPT, "image is empty")
    try:
        with warnings.catch_warnings():
            # Our own pixel cap below replaces PIL's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=None)
            return _to_pixels(image, data, limits, size, reading_side)
    except InvalidPostError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidPostError(ReasonCode.IMAGE_CORRUPT, "not a recognised image") from exc
    except Image.DecompressionBombError as exc:
        raise InvalidPostError(ReasonCode.IMAGE_TOO_MANY_PIXELS, str(exc)) from exc
    except Exception as exc:
        # PIL parses untrusted bytes and reports bad data through many types
        # (OSError, ValueError, SyntaxError, struct.error, IndexError...): all mean corrupt.
        raise InvalidPostError(
            ReasonCode.IMAGE_CORRUPT, f"cannot decode image: {type(exc).__name__}: {exc}"
        ) from exc


def _to_pixels(
    image: Image.Image, data: bytes, limits: DecodeLimits, size: int, reading_side: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    if image.format not in limits.allowed_image_formats:
        raise InvalidPostError(
            ReasonCode.IMAGE_FORMAT_NOT_ALLOWED,
            f"format {image.format} is not in {limits.allowed_image_formats}",
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidPostError(ReasonCode.IMAGE_CORRUPT, f"image has size {width}x{height}")
    if width * height > limits.max_image_pixels:
        raise InvalidPostError(
            ReasonCode.IMAGE_TOO_MANY_PIXELS,
            f"image is {width}x{height}, limit {limits.max_image_pixels} pixels",
        )
    pixels = _decoded(image, size).resize((size, size), Image.Resampling.BILINEAR)
    if reading_side is None:
        return np.asarray(pixels, dtype=np.uint8), None
    if image.format == "JPEG" and max(image.size) > size:
        # The classifier's copy was drafted at its own small scale (exactly as in training):
        # decode again at the reading scale. OCR costs ~100x a decode.
        image = Image.open(io.BytesIO(data))
    reading = reading_copy(_decoded(image, reading_side), reading_side)
    return np.asarray(pixels, dtype=np.uint8), np.asarray(reading, dtype=np.uint8)


def _decoded(image: Image.Image, size: int) -> Image.Image:
    if image.format == "JPEG":
        # Let libjpeg decode at a reduced scale: large photos decode several times faster.
        image.draft("RGB", (size, size))
    image.load()
    return image.convert("RGB")


def reading_copy(image: Image.Image, max_side: int) -> Image.Image:
    """`image` shrunk (bilinear, aspect kept) so its longest side is at most `max_side`."""
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    width, height = (max(1, round(side * scale)) for side in image.size)
    return image.resize((width, height), Image.Resampling.BILINEAR)
