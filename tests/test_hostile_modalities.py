"""Hostile inputs to the modality readers: decompression bombs are refused (or cut) from their
headers, 16-bit images convert without float64 copies, invalid text is refused. Issue #12, High."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossalign.modalities import LimitError, ReadError, get_reader, limits, set_limits
from crossalign.modalities.image import to_rgb
from hostile_payloads import flac_silence, npy_bomb, npz_bomb, png_16bit, png_bomb, wav_many_channels


@pytest.fixture(autouse=True)
def _restore_limits():  # type: ignore[no-untyped-def]
    before = limits()
    yield
    set_limits(**before.__dict__)


def test_png_bomb_refused_from_its_header() -> None:
    bomb = png_bomb(12000, 12000)
    assert len(bomb) < 100
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match="12000x12000 pixels exceeds the limit"):
        get_reader("image").read(bomb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 2**20 and time.perf_counter() - t0 < 1.0  # 432 MB if decoded


def test_image_limit_is_configurable(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buf, format="PNG")
    assert get_reader("image").read(buf.getvalue()).size == (40, 30)
    set_limits(max_image_pixels=1000)
    with pytest.raises(LimitError, match="40x30"):
        get_reader("image").read(buf.getvalue())
    (tmp_path / "a.png").write_bytes(buf.getvalue())  # files too: the CLI readers share the limits
    with pytest.raises(LimitError, match="a.png"):
        get_reader("image").read("a.png", tmp_path)


def test_limits_from_environment() -> None:
    code = ("from crossalign.modalities import limits; l = limits(); "
            "print(l.max_image_pixels, l.max_audio_seconds, l.max_sensor_values, l.max_file_mb)")
    env = dict(os.environ, CROSSALIGN_MAX_IMAGE_PIXELS="1234", CROSSALIGN_MAX_AUDIO_SECONDS="2.5",
               CROSSALIGN_MAX_SENSOR_VALUES="99", CROSSALIGN_MAX_FILE_MB="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1234", "2.5", "99", "3.0"]
    env["CROSSALIGN_MAX_IMAGE_PIXELS"] = "lots"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "CROSSALIGN_MAX_IMAGE_PIXELS='lots'" in bad.stderr


def test_16bit_image_converts_in_float32_strips() -> None:
    data, arr = png_16bit(500, 2000)
    img = Image.open(io.BytesIO(data))
    img.load()
    tracemalloc.start()
    rgb = to_rgb(img)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Reference: the stretch done in float64 on the whole image.
    lo, hi = float(arr.min()), float(arr.max())
    want = ((arr.astype(np.float64) - lo) / (hi - lo) * 255.0).astype(np.uint8)
    got = np.asarray(rgb)[..., 0]
    assert rgb.mode == "RGB" and np.abs(got.astype(int) - want.astype(int)).max() <= 1
    # A float64 copy alone is 8 bytes a pixel (the old code held two: 16+); we hold the uint16 copy,
    # the uint8 result and float32 strips of 256 rows.
    assert peak < arr.size * 6, peak / arr.size


def test_audio_decodes_only_the_first_seconds() -> None:
    hour = flac_silence(3600, 8000)
    assert len(hour) < 400_000
    tracemalloc.start()
    t0 = time.perf_counter()
    a = get_reader("audio").read(hour)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert a.sr == 16000 and len(a.wav) == 30 * 16000  # Whisper's window, nothing more
    assert time.perf_counter() - t0 < 3 and peak < 40 * 2**20  # an hour: 460 MB
    set_limits(max_audio_seconds=2)
    assert len(get_reader("audio").read(hour).wav) == 2 * 16000


def test_audio_with_too_many_channels_refused() -> None:
    with pytest.raises(LimitError, match="64 channels"):
        get_reader("audio").read(wav_many_channels(64))


def test_array_bombs_refused_before_reading(tmp_path: Path) -> None:
    r = get_reader("sensor")
    (tmp_path / "big.npy").write_bytes(npy_bomb((100_000, 100_000)))
    with pytest.raises(LimitError, match="10,000,000,000 values"):
        r.read("big.npy", tmp_path)
    (tmp_path / "zip.npz").write_bytes(npz_bomb(64))
    tracemalloc.start()
    with pytest.raises(LimitError, match="uncompressed"):
        set_limits(max_sensor_values=1_000_000)
        r.read("zip.npz", tmp_path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 2**20


def test_complex_and_text_arrays_refused(tmp_path: Path) -> None:
    r = get_reader("sensor")
    np.save(tmp_path / "c.npy", np.array([1 + 2j, 3 - 1j]))
    with pytest.raises(ReadError, match="complex"):
        r.read("c.npy", tmp_path)
    with pytest.raises(ReadError, match="complex"):
        r.read(np.array([[1j]]))
    with pytest.raises(ReadError, match="complex"):
        r.read([[1.0, 2j]])
    with pytest.raises(ReadError, match="send numbers"):
        r.read([["a", "b"]])


def test_file_size_limit(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(b"\0" * (2 * 2**20))
    set_limits(max_file_mb=1)
    with pytest.raises(LimitError, match="exceeds the 1 MB limit"):
        get_reader("image").read("big.png", tmp_path)
    with pytest.raises(LimitError):  # cache keys read the file too: same limit
        get_reader("image").content_key("big.png", tmp_path)


@pytest.mark.parametrize("text,needle", [
    ("\ud800", "lone surrogate U+D800"),
    ("abc \udfff def", "lone surrogate U+DFFF at character 4"),
    ("\u200b\u200b", "only invisible characters"),
    ("\u200d \ufeff \u2060", "only invisible characters"),
    ("   ", "empty text"),
])
def test_text_refuses_invalid_unicode_and_invisible_text(text: str, needle: str) -> None:
    with pytest.raises(ReadError, match=re.escape(needle)):
        get_reader("text").read(text)


def test_text_keeps_normal_text_with_format_characters() -> None:
    assert get_reader("text").read("a\u200bb  c") == "a\u200bb c"
    assert get_reader("text").read("emoji 😀") == "emoji 😀"
