"""Images: any file Pillow reads, any mode and size, converted to 8-bit RGB.

Alpha is composited on white and palette/greyscale/CMYK/16-bit images are converted, so
the same picture saved in different formats gives the same pixels to the encoder.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from crossalign.modalities.base import ReadError, file_bytes

__all__ = ["ImageReader", "to_rgb"]


def to_rgb(img: Image.Image) -> Image.Image:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


class ImageReader:
    name = "image"

    def read(self, value: Any, base_dir: Path | None = None) -> Image.Image:
        if isinstance(value, Image.Image):
            return to_rgb(value)
        data = value if isinstance(value, (bytes, bytearray)) else file_bytes(value, base_dir)
        return decode_image(bytes(data), value)

    def content_key(self, value: Any, base_dir: Path | None = None) -> bytes:
        if isinstance(value, Image.Image):
            return to_rgb(value).tobytes()
        return bytes(value) if isinstance(value, (bytes, bytearray)) else file_bytes(value, base_dir)


def decode_image(data: bytes, shown: Any = "<bytes>") -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decode now, so truncated files fail here and not inside the encoder
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        # Pillow's own message names a BytesIO address: unstable across runs, useless to the user.
        why = "unrecognised file format" if isinstance(e, UnidentifiedImageError) else str(e)
        raise ReadError(shown if not isinstance(shown, bytes) else "<bytes>", f"corrupt or unsupported image: {why}") from e
    if img.width < 1 or img.height < 1:
        raise ReadError(shown, "empty image")
    return to_rgb(img)
