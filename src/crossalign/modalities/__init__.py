"""The modality registry: name -> `Modality` (reader + the facts the CLI, service and data need).

Built-ins: text, image, audio, sensor. Another modality is one `Modality` passed to `register`,
from its own module or from a plug-in (`crossalign.plugins` entry point, see `crossalign.plugins`);
nothing else branches on modality names.
"""

from __future__ import annotations

from crossalign.modalities.audio import AUDIO, Audio
from crossalign.modalities.base import ClientError, Modality, ModalityReader, ReadError
from crossalign.modalities.image import IMAGE
from crossalign.modalities.limits import LimitError, Limits, limits, set_limits
from crossalign.modalities.sensor import SENSOR
from crossalign.modalities.text import TEXT

__all__ = ["Modality", "register", "modality", "modality_names", "get_reader", "modality_of_mime",
           "modality_of_suffix", "mime_types", "ReadError", "ClientError", "ModalityReader", "Audio",
           "LimitError", "Limits", "limits", "set_limits"]

_REGISTRY: dict[str, Modality] = {m.name: m for m in (TEXT, IMAGE, AUDIO, SENSOR)}


def _all() -> dict[str, Modality]:
    from crossalign.plugins import load_plugins

    load_plugins()
    return _REGISTRY


def register(m: Modality, *, replace: bool = False) -> Modality:
    """Add a modality; its name must be new (a word: it prefixes manifest columns, `image_xray`)."""
    if not m.name.isidentifier() or "_" in m.name:
        raise ValueError(f"modality name '{m.name}' must be one word of letters and digits")
    if m.name in _REGISTRY and not replace:
        raise ValueError(f"modality '{m.name}' is registered already")
    _REGISTRY[m.name] = m
    return m


def unregister(name: str) -> None:
    """Remove a modality (tests that register a toy one put the registry back as they found it)."""
    _REGISTRY.pop(name, None)


def modality_names() -> tuple[str, ...]:
    return tuple(_all())


def modality(name: str) -> Modality:
    try:
        return _all()[name]
    except KeyError:
        raise ValueError(f"unknown modality '{name}'; known: {', '.join(_REGISTRY)}") from None


def get_reader(name: str) -> ModalityReader:
    return modality(name).reader()


def mime_types() -> list[str]:
    return [t for m in _all().values() for t in m.mime_types]


def modality_of_mime(mime: str) -> str | None:
    """`image/png` -> image (a modality owning `image/*` or the exact type); None when none does."""
    mime = mime.lower()
    for m in _all().values():
        if mime in m.mime_types or f"{mime.split('/')[0]}/*" in m.mime_types:
            return m.name
    return None


def modality_of_suffix(suffix: str) -> str | None:
    """`png` (or `.png`) -> image; None when no modality claims the extension."""
    s = suffix.lower().lstrip(".")
    return next((m.name for m in _all().values() if s in m.suffixes), None)
