"""Text: a non-empty string, whitespace normalised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossalign.modalities.base import ReadError

__all__ = ["TextReader"]


class TextReader:
    name = "text"

    def read(self, value: Any, base_dir: Path | None = None) -> str:
        if value is None or (isinstance(value, float) and value != value):  # None or NaN from pandas/csv
            raise ReadError(value, "empty text")
        if not isinstance(value, str):
            raise ReadError(value, f"expected text, got {type(value).__name__}")
        text = " ".join(value.split())
        if not text:
            raise ReadError(value, "empty text")
        return text

    def content_key(self, value: Any, base_dir: Path | None = None) -> bytes:
        return self.read(value).encode("utf-8")
