"""Text: a non-empty string, whitespace normalised; invalid Unicode and invisible-only text refused."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from crossalign.modalities.base import Modality, ReadError
from crossalign.modalities.client import text_value

__all__ = ["TextReader", "TEXT"]


def _check_unicode(text: str, value: Any) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate ("\ud800"): tokenizers raise TypeError on it
        raise ReadError(value, f"invalid Unicode: lone surrogate U+{ord(text[e.start]):04X} "
                               f"at character {e.start}") from None


class TextReader:
    name = "text"

    def read(self, value: Any, base_dir: Path | None = None) -> str:
        if value is None or (isinstance(value, float) and value != value):  # None or NaN from pandas/csv
            raise ReadError(value, "empty text")
        if not isinstance(value, str):
            raise ReadError(value, f"expected text, got {type(value).__name__}")
        _check_unicode(value, value)
        text = " ".join(value.split())
        if not text:
            raise ReadError(value, "empty text")
        # Zero-width spaces, joiners, BOMs and other format characters (category Cf) print nothing:
        # a text made only of them (and spaces) is empty to a reader and noise to a tokenizer.
        if all(unicodedata.category(ch) in ("Cf", "Zs", "Cc") for ch in text):
            raise ReadError(value, "empty text (only invisible characters)")
        return text

    def content_key(self, value: Any, base_dir: Path | None = None) -> bytes:
        return self.read(value).encode("utf-8")


TEXT = Modality("text", TextReader, client=text_value, inline=True, suffixes=("txt",), upload=False,
                help="text")
