"""Client payloads -> raw items for the modality readers, without ever touching the filesystem.

Each modality's own `client` decoder (crossalign.modalities.client) turns a JSON value, base64,
a data URL (`data:image/png;base64,...`) or uploaded bytes into what its reader takes; this module
maps their refusals onto HTTP errors. Strings are never treated as paths.
"""

from __future__ import annotations

from typing import Any

from crossalign.modalities import ClientError, ReadError, mime_types, modality, modality_names, modality_of_mime
from crossalign.modalities.client import DATA_URL, split_data_url
from crossalign.serve.errors import APIError, from_read_error

__all__ = ["DATA_URL", "parse_data_url", "read_item"]


def parse_data_url(s: str) -> tuple[str, str] | None:
    """`data:image/png;base64,...` -> ("image", base64 text); None if `s` is not a base64 data URL."""
    parsed = split_data_url(s)
    if parsed is None:
        return None
    owner = modality_of_mime(parsed[0])
    if owner is None:
        raise APIError(400, f"unsupported data URL type '{parsed[0]}' (use {', '.join(mime_types())})",
                       code="unsupported_media_type")
    return owner, parsed[1]


def read_item(name: str, value: Any, param: str) -> Any:
    """One client value of a known modality -> raw item. Raises APIError(400) with a clear message."""
    if name not in modality_names():
        raise APIError(400, f"{param}: unknown modality '{name}'", param, "unknown_modality")
    m = modality(name)
    try:
        return m.reader().read(m.client(value), None)
    except ClientError as e:
        where = param if e.code != "unsupported_media_type" else None
        raise APIError(400, f"{where}: {e.message}" if where else e.message, where, e.code) from None
    except ReadError as e:
        raise from_read_error(e, param, name) from None
    except (ValueError, OSError, EOFError, MemoryError) as e:  # a decoder's own error on hostile bytes
        raise APIError(400, f"{param}: unreadable {name}: {e}", param, "invalid_" + name) from None
