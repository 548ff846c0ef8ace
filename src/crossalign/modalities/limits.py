"""Limits on what one input may cost to decode, checked before the decoding starts.

A 77-byte PNG can declare 12000x12000 pixels and a 180 KB FLAC of silence can hold an hour of
samples: every reader checks the declared size against these limits first, so a hostile file costs
a header read, not gigabytes. Defaults suit the packaged encoders (224-px images, Whisper's 30 s
window); change them per process with environment variables or `set_limits` (the server does).

| limit | default | environment variable |
|---|---|---|
| image pixels (width x height) | 40 000 000 | CROSSALIGN_MAX_IMAGE_PIXELS |
| audio seconds decoded (the rest is not read) | 30 | CROSSALIGN_MAX_AUDIO_SECONDS |
| audio channels | 16 | CROSSALIGN_MAX_AUDIO_CHANNELS |
| sensor array values | 16 000 000 | CROSSALIGN_MAX_SENSOR_VALUES |
| file size read from disk | 256 MB | CROSSALIGN_MAX_FILE_MB |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from crossalign.modalities.base import ReadError

__all__ = ["Limits", "LimitError", "limits", "set_limits"]


class LimitError(ReadError):
    """An input is larger than a configured limit (HTTP 413, a skipped row in the CLI)."""


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int = 40_000_000  # about 7300 x 5500; 120 MB as 8-bit RGB
    max_audio_seconds: float = 30.0  # Whisper's window; only this much is decoded
    max_audio_channels: int = 16
    max_sensor_values: int = 16_000_000  # 64 MB as float32
    max_file_mb: float = 256.0

    def __post_init__(self) -> None:
        if min(self.max_image_pixels, self.max_audio_channels, self.max_sensor_values) < 1 or (
            self.max_audio_seconds <= 0 or self.max_file_mb <= 0
        ):
            raise ValueError("every limit must be positive")

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


_ENV = {
    "max_image_pixels": ("CROSSALIGN_MAX_IMAGE_PIXELS", int),
    "max_audio_seconds": ("CROSSALIGN_MAX_AUDIO_SECONDS", float),
    "max_audio_channels": ("CROSSALIGN_MAX_AUDIO_CHANNELS", int),
    "max_sensor_values": ("CROSSALIGN_MAX_SENSOR_VALUES", int),
    "max_file_mb": ("CROSSALIGN_MAX_FILE_MB", float),
}
_current: Limits | None = None


def _from_env() -> Limits:
    given: dict[str, Any] = {}
    for f in fields(Limits):
        var, kind = _ENV[f.name]
        if os.environ.get(var):
            try:
                given[f.name] = kind(os.environ[var])
            except ValueError:
                raise ValueError(f"{var}={os.environ[var]!r} is not a number") from None
    return Limits(**given)


def limits() -> Limits:
    """The limits in force: `set_limits` values, else the environment, else the defaults."""
    global _current
    if _current is None:
        _current = _from_env()
    return _current


def set_limits(**changes: Any) -> Limits:
    """Change some limits for this process (None leaves a limit as it is); returns the new set."""
    global _current
    _current = replace(limits(), **{k: v for k, v in changes.items() if v is not None})
    return _current
