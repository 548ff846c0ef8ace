"""Images: any file Pillow reads, any mode and size, converted to 8-bit RGB.

Alpha is composited on white and palette/greyscale/CMYK/16-bit images are converted, so
the same picture saved in different formats gives the same pixels to the encoder. The declared
size is checked against `limits().max_image_pixels` before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from crossalign.modalities.base import Modality, ReadError, file_bytes
from crossalign.modalities.client import file_value
from crossalign.modalities.limits import LimitError, limits

__all__ = ["ImageReader", "to_rgb", "decode_image", "IMAGE"]

_ROWS = 256  # rows converted at a time: a 16-bit image never gets a full-size float copy


def _wide_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale -> 8-bit 'L', stretched to the image's own range."""
    arr = np.asarray(img)  # (H, W) uint16 / int32 / float32: the one full-size copy
    lo, hi = float(arr.min()), float(arr.max())
    out = np.zeros(arr.shape, dtype=np.uint8)
    if hi > lo and np.isfinite(lo) and np.isfinite(hi):
        scale = np.float32(255.0 / (hi - lo))
        for r in range(0, arr.shape[0], _ROWS):  # float32 strips of _ROWS rows
            block = (arr[r:r + _ROWS].astype(np.float32) - np.float32(lo)) * scale
            out[r:r + _ROWS] = np.clip(np.nan_to_num(block), 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _wide_to_l(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def check_pixels(width: int, height: int, shown: Any) -> None:
    cap = limits().max_image_pixels
    if width * height > cap:
        raise LimitError(shown, f"image of {width}x{height} pixels exceeds the limit of {cap:,} pixels "
                                "(CROSSALIGN_MAX_IMAGE_PIXELS)")


class ImageReader:
    name = "image"

    def read(self, value: Any, base_dir: Path | None = None) -> Image.Image:
        if isinstance(value, Image.Image):
            check_pixels(value.width, value.height, "<image>")
            return to_rgb(value)
        data = value if isinstance(value, (bytes, bytearray)) else file_bytes(value, base_dir)
        return decode_image(bytes(data), value)

    def content_key(self, value: Any, base_dir: Path | None = None) -> bytes:
        if isinstance(value, Image.Image):
            return to_rgb(value).tobytes()
        return bytes(value) if isinstance(value, (bytes, bytearray)) else file_bytes(value, base_dir)


def decode_image(data: bytes, shown: Any = "<bytes>") -> Image.Image:
    shown = "<bytes>" if isinstance(shown, (bytes, bytearray)) else shown
    try:
        with warnings.catch_warnings():  # our own limit decides, not Pillow's bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
            check_pixels(img.width, img.height, shown)
            img.load()  # decode now, so truncated files fail here and not inside the encoder
    except LimitError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's own check fires in open() past 2x its limit
        raise LimitError(shown, f"image exceeds the limit of {limits().max_image_pixels:,} pixels "
                                f"(CROSSALIGN_MAX_IMAGE_PIXELS): {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        # Pillow's own message names a BytesIO address: unstable across runs, useless to the user.
        why = "unrecognised file format" if isinstance(e, UnidentifiedImageError) else str(e)
        raise ReadError(shown, f"corrupt or unsupported image: {why}") from e
    if img.width < 1 or img.height < 1:
        raise ReadError(shown, "empty image")
    return to_rgb(img)


IMAGE = Modality("image", ImageReader, client=file_value("image"), mime_types=("image/*",),
                 suffixes=("jpg", "jpeg", "png", "webp"), help="image file (base64 or data URL over HTTP)")
