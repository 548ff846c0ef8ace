"""Client payloads -> raw items for the modality readers, without ever touching the filesystem.

Images and audio arrive as bytes (multipart upload), base64 or data URLs
(`data:image/png;base64,...`); sensor arrays as nested JSON lists or base64 `.npy` bytes. Strings
are never treated as paths: the readers only ever see bytes or arrays here.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any


from crossalign.modalities import ReadError, get_reader
from crossalign.modalities.sensor import load_npy
from crossalign.serve.errors import APIError, from_read_error

__all__ = ["DATA_URL", "parse_data_url", "decode_base64", "read_item", "MODALITY_OF_MIME"]

DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[\w.+-]+)*;base64,", re.ASCII)
MODALITY_OF_MIME = {"image": "image", "audio": "audio"}
_NPY_MIMES = {"application/x-npy", "application/octet-stream", "application/npy"}


def parse_data_url(s: str) -> tuple[str, str] | None:
    """`data:image/png;base64,...` -> ("image", base64 text); None if `s` is not a base64 data URL."""
    m = DATA_URL.match(s)
    if not m:
        return None
    mime = m.group("mime").lower()
    major = mime.split("/")[0]
    if major in MODALITY_OF_MIME:
        return MODALITY_OF_MIME[major], s[m.end() :]
    if mime in _NPY_MIMES:
        return "sensor", s[m.end() :]
    raise APIError(
        400,
        f"unsupported data URL type '{mime}' (use image/*, audio/* or application/x-npy)",
        code="unsupported_media_type",
    )


def decode_base64(s: str, param: str) -> bytes:
    s = re.sub(r"\s+", "", s)  # MIME-style line breaks are common in base64 from other tools
    if not s:
        raise APIError(400, f"{param}: empty input", param, "empty_input")
    s = s.replace("-", "+").replace("_", "/")  # accept the URL-safe alphabet too
    try:
        data = base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise APIError(
            400, f"{param}: not valid base64 ({e}); send base64 or a data URL", param, "invalid_base64"
        ) from None
    if not data:
        raise APIError(400, f"{param}: empty input", param, "empty_input")
    return data


def _sensor_array(value: Any, param: str) -> Any:
    if isinstance(value, (bytes, bytearray)):
        try:  # header checked first: size limit, real dtype; never unpickles
            return load_npy(io.BytesIO(bytes(value)), "<bytes>")
        except ReadError as e:
            raise from_read_error(e, param, "sensor") from None
    if isinstance(value, str):
        parsed = parse_data_url(value)
        return _sensor_array(decode_base64(parsed[1] if parsed else value, param), param)
    if isinstance(value, list):
        return value  # the reader infers the dtype: complex or text values are refused, not cast
    raise APIError(
        400, f"{param}: a sensor input is a nested list of numbers or base64 .npy", param, "invalid_array"
    )


def read_item(modality: str, value: Any, param: str) -> Any:
    """One client value of a known modality -> raw item. Raises APIError(400) with a clear message."""
    if modality == "text":
        if not isinstance(value, str):
            raise APIError(400, f"{param}: text must be a string", param, "invalid_value")
        if not value.strip():
            raise APIError(400, f"{param}: empty text", param, "empty_input")
        raw: Any = value
    elif modality in ("image", "audio"):
        if isinstance(value, str):
            parsed = parse_data_url(value)
            if parsed and parsed[0] != modality:
                raise APIError(
                    400, f"{param}: data URL holds {parsed[0]}, expected {modality}", param, "invalid_value"
                )
            value = decode_base64(parsed[1] if parsed else value, param)
        if not isinstance(value, (bytes, bytearray)):
            raise APIError(400, f"{param}: {modality} must be base64, a data URL or an uploaded file", param)
        if not value:
            raise APIError(400, f"{param}: empty {modality}", param, "empty_input")
        raw = bytes(value)  # bytes, never a path
    elif modality == "sensor":
        raw = _sensor_array(value, param)
    else:
        raise APIError(400, f"{param}: unknown modality '{modality}'", param, "unknown_modality")
    try:
        return get_reader(modality).read(raw, None)
    except ReadError as e:
        raise from_read_error(e, param, modality) from None
    except (ValueError, OSError, EOFError, MemoryError) as e:  # a decoder's own error on hostile bytes
        raise APIError(400, f"{param}: unreadable {modality}: {e}", param, "invalid_" + modality) from None
