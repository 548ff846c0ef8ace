"""Audio: any sample rate and channel count, downmixed to mono and resampled to 16 kHz float32."""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from crossalign.modalities.base import Modality, ReadError, file_bytes
from crossalign.modalities.client import file_value
from crossalign.modalities.limits import LimitError, limits

__all__ = ["Audio", "AudioReader", "to_mono_16k", "TARGET_SR", "AUDIO"]

TARGET_SR = 16_000


@dataclass
class Audio:
    """Mono waveform in [-1, 1] at `sr` Hz."""

    wav: np.ndarray  # (n_samples,) float32
    sr: int = TARGET_SR

    @property
    def seconds(self) -> float:
        return len(self.wav) / self.sr


def to_mono_16k(wav: np.ndarray, sr: int) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:  # (n_samples, channels) as soundfile returns it
        wav = wav.mean(axis=1)
    if wav.ndim != 1:
        raise ValueError(f"audio must be 1-D or (samples, channels), got shape {wav.shape}")
    if sr != TARGET_SR:
        g = gcd(int(sr), TARGET_SR)
        # Polyphase resampling applies an anti-aliasing filter, unlike plain interpolation.
        wav = resample_poly(wav, TARGET_SR // g, int(sr) // g).astype(np.float32)
    return wav


class AudioReader:
    name = "audio"

    def read(self, value: Any, base_dir: Path | None = None) -> Audio:
        if isinstance(value, Audio):
            keep = int(limits().max_audio_seconds * value.sr)
            return Audio(to_mono_16k(value.wav[:keep], value.sr))
        data = value if isinstance(value, (bytes, bytearray)) else file_bytes(value, base_dir)
        return decode_audio(bytes(data), value)

    def content_key(self, value: Any, base_dir: Path | None = None) -> bytes:
        if isinstance(value, Audio):
            return value.wav.tobytes() + str(value.sr).encode()
        return bytes(value) if isinstance(value, (bytes, bytearray)) else file_bytes(value, base_dir)


_MIN_SR, _MAX_SR = 1_000, 768_000


def decode_audio(data: bytes, shown: Any = "<bytes>") -> Audio:
    """Decode at most `limits().max_audio_seconds` of audio: the rest of the file is never read
    (a small FLAC of silence can declare hours). Too many channels or an absurd rate is refused."""
    shown = "<bytes>" if isinstance(shown, (bytes, bytearray)) else shown
    lim = limits()
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sr, channels = int(f.samplerate), int(f.channels)
            if channels > lim.max_audio_channels:
                raise LimitError(shown, f"audio with {channels} channels exceeds the limit of "
                                        f"{lim.max_audio_channels} (CROSSALIGN_MAX_AUDIO_CHANNELS)")
            if not _MIN_SR <= sr <= _MAX_SR:
                raise ReadError(shown, f"unsupported sample rate {sr} Hz (use {_MIN_SR}..{_MAX_SR})")
            frames = int(lim.max_audio_seconds * sr)
            wav = f.read(frames, dtype="float32", always_2d=True)  # (n <= frames, channels)
    except ReadError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError or TypeError by format
        raise ReadError(shown, f"corrupt or unsupported audio: {e}") from e
    if wav.shape[0] == 0:
        raise ReadError(shown, "empty audio (no samples)")
    if not np.isfinite(wav).all():
        raise ReadError(shown, "audio contains NaN or infinite samples")
    return Audio(to_mono_16k(wav, sr))


AUDIO = Modality("audio", AudioReader, client=file_value("audio"), mime_types=("audio/*",),
                 suffixes=("wav", "flac", "mp3"), help="audio file: wav, flac, ogg (base64 or data URL over HTTP)")
