"""One reader per modality, keyed by modality name."""

from __future__ import annotations

from typing import Callable

from crossalign.modalities.audio import Audio, AudioReader
from crossalign.modalities.base import ModalityReader, ReadError
from crossalign.modalities.image import ImageReader
from crossalign.modalities.limits import LimitError, Limits, limits, set_limits
from crossalign.modalities.sensor import SensorReader
from crossalign.modalities.text import TextReader

__all__ = ["READERS", "get_reader", "ReadError", "ModalityReader", "Audio", "MODALITIES",
           "LimitError", "Limits", "limits", "set_limits"]

READERS: dict[str, Callable[[], ModalityReader]] = {
    "text": TextReader,
    "image": ImageReader,
    "audio": AudioReader,
    "sensor": SensorReader,
}
MODALITIES = tuple(READERS)


def get_reader(modality: str) -> ModalityReader:
    try:
        return READERS[modality]()
    except KeyError:
        raise ValueError(f"unknown modality '{modality}'; known: {', '.join(READERS)}") from None
