"""Encoder registry: explicit name -> factory. `hf:<id or path>` builds a Hugging Face tower."""

from __future__ import annotations

from typing import Any, Callable

from crossalign.encoders.base import Encoder, EncoderSpec

__all__ = ["ENCODERS", "DEFAULT_ENCODERS", "SENSOR_TOWER_RANKS", "default_sensor_tower", "build_encoder", "Encoder", "EncoderSpec", "encoder_modality"]


def _minilm(**o: Any) -> Encoder:
    from crossalign.encoders.minilm import minilm

    return minilm(**o)


def _e5(**o: Any) -> Encoder:
    from crossalign.encoders.e5 import E5Encoder

    return E5Encoder(**o)


def _effnet(**o: Any) -> Encoder:
    from crossalign.encoders.efficientnet import EfficientNetEncoder

    return EfficientNetEncoder(**o)


def _whisper_tiny(**o: Any) -> Encoder:
    from crossalign.encoders.whisper import whisper_tiny

    return whisper_tiny(**o)


def _whisper_base(**o: Any) -> Encoder:
    from crossalign.encoders.whisper import whisper_base

    return whisper_base(**o)


def _whisper_asr(**o: Any) -> Encoder:
    from crossalign.encoders.whisper_asr import whisper_asr

    return whisper_asr(**o)


def _whisper_base_asr(**o: Any) -> Encoder:
    from crossalign.encoders.whisper_asr import whisper_base_asr

    return whisper_base_asr(**o)


def _sensor(kind: str) -> Callable[..., Encoder]:
    def make(**o: Any) -> Encoder:
        from crossalign.encoders import sensor

        return getattr(sensor, f"sensor_{kind}")(**o)

    return make


# Factories import their backbone lazily: listing encoders must not load four models.
ENCODERS: dict[str, Callable[..., Encoder]] = {
    "text:minilm": _minilm,
    "text:e5-small": _e5,
    "image:efficientnet-lite0": _effnet,
    "audio:whisper-tiny": _whisper_tiny,
    "audio:whisper-base": _whisper_base,
    "audio:whisper-asr": _whisper_asr,
    "audio:whisper-base-asr": _whisper_base_asr,
    "sensor:mlp": _sensor("mlp"),
    "sensor:conv1d": _sensor("conv1d"),
    "sensor:conv2d": _sensor("conv2d"),
}

# The one rule for sensor towers: the array ranks each convolutional tower takes ((C, T) series
# and (C, H, W) stacks too), and which tower arrays of a given shape get by default
# (data/encoder_choice.py, the fusion defaults and the towers' own errors all use these two).
SENSOR_TOWER_RANKS: dict[str, tuple[int, ...]] = {"sensor:conv1d": (1, 2), "sensor:conv2d": (2, 3)}


def default_sensor_tower(shape: tuple[int, ...] | None) -> str:
    """1-D series -> conv1d, 2-D maps and (C, H, W) stacks -> conv2d; other ranks, or no data seen
    yet, -> the MLP (it takes any shape)."""
    rank = None if shape is None else len(shape)
    if rank == 1:
        return "sensor:conv1d"
    if rank in (2, 3):
        return "sensor:conv2d"
    return "sensor:mlp"


# Before any data is seen; a column's encoder is then chosen from its content (data/encoder_choice.py).
DEFAULT_ENCODERS: dict[str, str] = {
    "text": "text:minilm",
    "image": "image:efficientnet-lite0",
    "audio": "audio:whisper-tiny",
    "sensor": default_sensor_tower(None),
}


def encoder_modality(name: str, modality: str | None = None) -> str:
    if name.startswith("hf:"):
        if modality is None:
            raise ValueError(f"say which modality '{name}' encodes")
        return modality
    return name.split(":", 1)[0]


def build_encoder(name: str, modality: str | None = None, **options: Any) -> Encoder:
    """Build an encoder by registry name, e.g. `build_encoder("image:efficientnet-lite0", grid=3)`."""
    if name.startswith("hf:"):
        from crossalign.encoders.hf import hf_encoder

        return hf_encoder(name[3:], modality=modality or "text", **options)
    try:
        factory = ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder '{name}'; known: {', '.join(ENCODERS)}, or hf:<id or path>") from None
    return factory(**options)
