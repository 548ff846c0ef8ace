"""Client values -> what a modality reader takes, without ever touching the filesystem.

Files arrive as bytes (multipart upload), base64 or data URLs (`data:image/png;base64,...`); arrays
as nested JSON lists or base64 `.npy` bytes. Strings are never treated as paths: readers only ever
see bytes or arrays from here. Each modality names its decoder in its `Modality.client`; these are
the ones the built-ins share. They raise `ClientError`, which the service turns into a 400.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any, Callable

from crossalign.modalities.base import ClientError

__all__ = ["DATA_URL", "split_data_url", "decode_base64", "text_value", "file_value", "array_value"]

DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[\w.+-]+)*;base64,", re.ASCII)


def split_data_url(s: str) -> tuple[str, str] | None:
    """`data:image/png;base64,...` -> ("image/png", base64 text); None if `s` is not a base64 data URL."""
    m = DATA_URL.match(s)
    return (m.group("mime").lower(), s[m.end():]) if m else None


def _owner(mime: str) -> str:
    """The registered modality that owns a data-URL type (ClientError when none does)."""
    from crossalign.modalities import modality_of_mime, mime_types  # the registry imports this module

    owner = modality_of_mime(mime)
    if owner is None:
        raise ClientError(f"unsupported data URL type '{mime}' (use {', '.join(mime_types())})",
                          "unsupported_media_type")
    return owner


def decode_base64(s: str) -> bytes:
    s = re.sub(r"\s+", "", s)  # MIME-style line breaks are common in base64 from other tools
    if not s:
        raise ClientError("empty input", "empty_input")
    s = s.replace("-", "+").replace("_", "/")  # accept the URL-safe alphabet too
    try:
        data = base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ClientError(f"not valid base64 ({e}); send base64 or a data URL", "invalid_base64") from None
    if not data:
        raise ClientError("empty input", "empty_input")
    return data


def text_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ClientError("text must be a string")
    if not value.strip():
        raise ClientError("empty text", "empty_input")
    return value


def file_value(modality: str) -> Callable[[Any], bytes]:
    """Decoder for a modality whose items are files: bytes, base64, or a data URL of its own type."""

    def decode(value: Any) -> bytes:
        if isinstance(value, str):
            parsed = split_data_url(value)
            if parsed:
                holds = _owner(parsed[0])
                if holds != modality:
                    raise ClientError(f"data URL holds {holds}, expected {modality}", "invalid_value")
            value = decode_base64(parsed[1] if parsed else value)
        if not isinstance(value, (bytes, bytearray)):
            raise ClientError(f"{modality} must be base64, a data URL or an uploaded file")
        if not value:
            raise ClientError(f"empty {modality}", "empty_input")
        return bytes(value)  # bytes, never a path

    return decode


def array_value(modality: str) -> Callable[[Any], Any]:
    """Decoder for arrays: a nested list of numbers (the reader infers and checks the dtype), or .npy
    bytes / base64 / a data URL, whose header is checked (size limit, real dtype; never unpickled)."""

    def decode(value: Any) -> Any:
        from crossalign.modalities.sensor import load_npy  # sensor.py imports this module

        if isinstance(value, (bytes, bytearray)):
            return load_npy(io.BytesIO(bytes(value)), "<bytes>")  # ReadError: the service maps it
        if isinstance(value, str):
            parsed = split_data_url(value)
            if parsed:
                _owner(parsed[0])
            return decode(decode_base64(parsed[1] if parsed else value))
        if isinstance(value, list):
            return value  # the reader infers the dtype: complex or text values are refused, not cast
        raise ClientError(f"a {modality} input is a nested list of numbers or base64 .npy", "invalid_array")

    return decode
