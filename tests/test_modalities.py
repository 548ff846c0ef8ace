"""Modality readers: every input form converges on one normalised raw item, bad input names the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from crossalign.modalities import Audio, ReadError, get_reader
from crossalign.modalities.audio import TARGET_SR

# ---------------------------------------------------------------- text


def test_text_whitespace_is_normalised() -> None:
    r = get_reader("text")
    assert r.read("  a red\n\tcircle   on  the left ") == "a red circle on the left"
    assert r.read("一个 红色的圆") == "一个 红色的圆"
    # Same text, different whitespace -> same cache key.
    assert r.content_key("a  red circle") == r.content_key(" a red circle\n")


@pytest.mark.parametrize("value", ["", "   \n\t", None, float("nan"), 3, ["a"]])
def test_text_empty_or_not_text_is_refused(value: object) -> None:
    with pytest.raises(ReadError):
        get_reader("text").read(value)


def test_unknown_modality() -> None:
    with pytest.raises(ValueError, match="unknown modality"):
        get_reader("smell")


# ---------------------------------------------------------------- image


def _scene_rgb() -> Image.Image:
    """White picture with a pure red square and a pure blue bar: colours every mode can hold."""
    a = np.full((24, 32, 3), 255, np.uint8)
    a[4:12, 4:12] = (255, 0, 0)
    a[16:20, 2:30] = (0, 0, 255)
    return Image.fromarray(a, "RGB")


def _save(img: Image.Image, path: Path, **kw: object) -> Path:
    img.save(path, **kw)
    return path


def test_image_modes_convert_to_the_same_rgb(tmp_path: Path) -> None:
    ref = _scene_rgb()
    ref_arr = np.asarray(ref)
    r = get_reader("image")

    # RGBA with a *transparent black* background: alpha is composited on white, not dropped.
    rgba = np.zeros((24, 32, 4), np.uint8)
    mask = (ref_arr != 255).any(-1)
    rgba[mask, :3] = ref_arr[mask]
    rgba[mask, 3] = 255
    p_rgba = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png")

    # Palette image whose background index is declared transparent.
    pal = np.zeros((24, 32), np.uint8)
    pal[4:12, 4:12] = 1
    pal[16:20, 2:30] = 2
    p_img = Image.fromarray(pal, "P")
    p_img.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    p_pal = _save(p_img, tmp_path / "pal.png", transparency=0)

    # CMYK (TIFF keeps it lossless): red = (0, 255, 255, 0), blue = (255, 255, 0, 0).
    p_cmyk = _save(ref.convert("CMYK"), tmp_path / "cmyk.tif")

    for p in (p_rgba, p_pal, p_cmyk):
        got = r.read(p.name, tmp_path)
        assert got.mode == "RGB" and got.size == ref.size, p.name
        np.testing.assert_array_equal(np.asarray(got), ref_arr, err_msg=p.name)

    # The same picture as bytes and as an in-memory PIL image reads identically.
    np.testing.assert_array_equal(np.asarray(r.read(p_rgba.read_bytes())), ref_arr)
    np.testing.assert_array_equal(np.asarray(r.read(Image.open(p_pal))), ref_arr)


def test_image_greyscale_and_16_bit(tmp_path: Path) -> None:
    r = get_reader("image")
    grad = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (4, 1))  # (4, 32) 0..248
    got = np.asarray(r.read(_save(Image.fromarray(grad, "L"), tmp_path / "l.png")))
    assert got.shape == (4, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], grad)

    # 16-bit: the full 0..65535 range is stretched onto 0..255, not clipped at 255 (all white).
    g16 = (np.tile(np.linspace(0, 65535, 32), (4, 1))).astype(np.uint16)
    path16 = _save(Image.fromarray(g16), tmp_path / "g16.png")  # uint16 -> mode I;16
    assert Image.open(path16).mode.startswith("I")
    got16 = np.asarray(r.read(path16))
    assert got16.shape == (4, 32, 3)
    assert got16[0, 0, 0] == 0 and got16[0, -1, 0] == 255
    assert np.all(np.diff(got16[0, :, 0].astype(int)) >= 0)  # monotone, like the source
    assert len(np.unique(got16[..., 0])) == 32


def test_image_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert get_reader("image").read(tmp_path / "rot.jpg").size == (20, 40)


def test_image_corrupt_truncated_missing_name_the_file(tmp_path: Path) -> None:
    r = get_reader("image")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"this is not an image at all" * 10)
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("truncated.png", "garbage.jpg", "empty.png"):
        with pytest.raises(ReadError, match=name) as ei:
            r.read(name, tmp_path)
        assert "corrupt" in ei.value.reason
    with pytest.raises(ReadError, match="not found.*nothere.png"):
        r.read("nothere.png", tmp_path)
    with pytest.raises(ReadError, match="expected a file path"):
        r.read(None, tmp_path)


# ---------------------------------------------------------------- audio


def _peak_hz(wav: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sr)[int(spec.argmax())])


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_audio_resampled_to_mono_16k(tmp_path: Path, sr: int, channels: int) -> None:
    seconds, hz = 1.5, 1000.0
    t = np.arange(int(seconds * sr)) / sr
    mono = 0.5 * np.sin(2 * np.pi * hz * t)
    # Stereo: right channel at half the level, so a channel-0-only reader would give a louder signal.
    data = mono[:, None] * np.array([[1.0, 0.5]]) if channels == 2 else mono
    fmt = "FLAC" if sr in (22050, 48000) else "WAV"
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, data, sr, format=fmt)

    a = get_reader("audio").read(path)
    assert isinstance(a, Audio) and a.sr == TARGET_SR
    assert a.wav.dtype == np.float32 and a.wav.ndim == 1
    assert abs(a.seconds - seconds) < 1e-3
    assert abs(_peak_hz(a.wav, TARGET_SR) - hz) < 2.0
    rms_expected = 0.5 / np.sqrt(2) * (0.75 if channels == 2 else 1.0)  # mean of the two channels
    mid = a.wav[TARGET_SR // 4: -TARGET_SR // 4]  # away from the resampling filter's edges
    assert abs(float(np.sqrt((mid ** 2).mean())) - rms_expected) < 0.01


def test_audio_high_frequency_is_filtered_not_aliased(tmp_path: Path) -> None:
    # 11 kHz at 44.1 kHz lies above the 8 kHz Nyquist of 16 kHz: it must vanish, not fold to 5 kHz.
    sr = 44100
    t = np.arange(sr) / sr
    sf.write(tmp_path / "hi.wav", 0.5 * np.sin(2 * np.pi * 11000 * t), sr)
    a = get_reader("audio").read(tmp_path / "hi.wav")
    mid = a.wav[800:-800]  # the filter's edge transient (first/last 50 ms) is not the point here
    assert float(np.sqrt((mid ** 2).mean())) < 0.01  # a folded tone would keep its 0.35 RMS


def test_audio_object_and_bytes(tmp_path: Path) -> None:
    r = get_reader("audio")
    wav = np.sin(np.linspace(0, 200, 22050)).astype(np.float32)
    a = r.read(Audio(np.stack([wav, wav], 1), sr=22050))
    assert a.sr == TARGET_SR and abs(a.seconds - 1.0) < 1e-3
    buf = io.BytesIO()
    sf.write(buf, wav, 22050, format="WAV")
    b = r.read(buf.getvalue())
    np.testing.assert_allclose(a.wav, b.wav, atol=1e-4)  # WAV stores 16-bit PCM


def test_audio_corrupt_and_empty_name_the_file(tmp_path: Path) -> None:
    r = get_reader("audio")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(1).bytes(4000))
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000, np.float32), 16000, format="FLAC")
    (tmp_path / "cut.flac").write_bytes(buf.getvalue()[:30])  # header only, cut inside the metadata
    for name in ("noise.wav", "empty.wav", "cut.flac"):
        with pytest.raises(ReadError, match=name):
            r.read(name, tmp_path)
    with pytest.raises(ReadError, match="not found"):
        r.read("missing.flac", tmp_path)


# ---------------------------------------------------------------- sensor


def test_sensor_npy_npz_csv_agree(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "a.npz", x=a)
    np.savetxt(tmp_path / "a.csv", a, delimiter=",")
    r = get_reader("sensor")
    outs = [r.read(n, tmp_path) for n in ("a.npy", "a.npz", "a.csv")]
    for o in outs:
        assert o.dtype == np.float32 and o.shape == (3, 4)
        np.testing.assert_allclose(o, a.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(r.read([[1, 2], [3, 4]]), np.array([[1, 2], [3, 4]], np.float32))


def test_sensor_refuses_pickle_nan_and_bad_files(tmp_path: Path) -> None:
    r = get_reader("sensor")
    np.save(tmp_path / "obj.npy", np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "nan.npy", np.array([1.0, np.nan]))
    np.save(tmp_path / "inf.npy", np.array([1.0, np.inf]))
    np.savez(tmp_path / "two.npz", a=np.zeros(2), b=np.zeros(2))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    (tmp_path / "bad.csv").write_text("1,2,x\n3,4,5\n")
    (tmp_path / "x.bin").write_bytes(b"\0" * 8)
    cases = {"obj.npy": "dtype object refused", "nan.npy": "NaN", "inf.npy": "infinite", "two.npz": "exactly one",
             "empty.npy": "empty", "bad.csv": "corrupt", "x.bin": "unsupported"}
    for name, why in cases.items():
        with pytest.raises(ReadError, match=name) as ei:
            r.read(name, tmp_path)
        assert why in ei.value.reason, (name, ei.value.reason)
    with pytest.raises(ReadError, match="NaN"):
        r.read(np.array([0.0, np.nan]))
