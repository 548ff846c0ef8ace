"""Small hostile inputs, generated on the spot: decompression bombs and malformed values.

Shared by the tests/test_hostile_*.py files and benchmarks/load.py. Each is a few bytes to a few
hundred kilobytes on the wire and would cost hundreds of megabytes to gigabytes if decoded in full.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np

__all__ = ["png_bomb", "flac_silence", "npy_bomb", "npz_bomb", "deep_json", "png_16bit", "wav_many_channels"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 12000, height: int = 12000) -> bytes:
    """A ~80-byte PNG declaring width x height RGB pixels (432 MB decoded for 12000 x 12000)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64, 9)) + _chunk(b"IEND", b""))


def flac_silence(seconds: float = 3600.0, sr: int = 8000) -> bytes:
    """FLAC of silence: ~180 KB for an hour at 8 kHz, ~460 MB as float32 at 16 kHz."""
    import soundfile as sf

    buf = io.BytesIO()
    block = np.zeros(sr * 60, dtype=np.int16)  # written a minute at a time: flat memory here too
    with sf.SoundFile(buf, "w", samplerate=sr, channels=1, format="FLAC", subtype="PCM_16") as f:
        left = int(seconds * sr)
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    return buf.getvalue()


def wav_many_channels(channels: int = 64, sr: int = 8000, seconds: float = 0.1) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(sr * seconds), channels), np.float32), sr, format="WAV")
    return buf.getvalue()


def npy_bomb(shape: tuple[int, ...] = (100_000, 100_000)) -> bytes:
    """A .npy header declaring `shape` float32 values (40 GB) and no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def npz_bomb(megabytes: int = 256) -> bytes:
    """An .npz whose one member inflates to `megabytes` of zeros (a zip bomb), ~250 KB compressed."""
    buf = io.BytesIO()
    n = megabytes * 1024 * 1024 // 4
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("a.npy", "w", force_zip64=True) as f:
            f.write(npy_bomb((n,)))
            zeros = bytes(16 * 1024 * 1024)
            for _ in range(megabytes // 16):
                f.write(zeros)
    return buf.getvalue()


def deep_json(depth: int = 100_000, key: str = "text") -> bytes:
    return b'{"' + key.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"


def png_16bit(width: int = 64, height: int = 48) -> tuple[bytes, np.ndarray]:
    """A 16-bit greyscale PNG (a ramp) and its pixel values."""
    from PIL import Image

    arr = (np.arange(width * height, dtype=np.uint32).reshape(height, width) * 37 % 65536).astype(np.uint16)
    buf = io.BytesIO()
    img = Image.new("I;16", (width, height))
    img.frombytes(arr.astype("<u2").tobytes())
    img.save(buf, format="PNG")
    return buf.getvalue(), arr
