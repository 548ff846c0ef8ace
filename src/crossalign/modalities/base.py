"""The contract every modality follows: a reader plus the facts other rooms need about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

__all__ = ["ReadError", "ModalityReader", "Modality", "ClientError"]


class ReadError(ValueError):
    """A raw value could not be read. The message names the value (and row/column when known)."""

    def __init__(self, value: Any, reason: str, *, row: int | None = None, column: str | None = None):
        self.value, self.reason, self.row, self.column = value, reason, row, column
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        shown = str(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(f"{prefix}{reason} ({shown!r})")

    def at(self, row: int | None, column: str | None) -> "ReadError":
        return type(self)(self.value, self.reason, row=row, column=column)


class ModalityReader(Protocol):
    """Reads one manifest value into the raw item an encoder of this modality takes."""

    name: str

    def read(self, value: Any, base_dir: Path | None = None) -> Any:
        """Return the raw item, or raise ReadError naming the value."""
        ...

    def content_key(self, value: Any, base_dir: Path | None = None) -> bytes:
        """Bytes that identify the input's content (for cache keys); cheap, no decoding."""
        ...


class ClientError(ValueError):
    """A client's value (HTTP body field) cannot become an input: `message` says why, `code` is the
    machine-readable error code the service reports (`invalid_base64`, `empty_input`, ...)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class Modality:
    """One modality and the facts about it that the CLI, the service, sharded data and checks use,
    so none of them branches on modality names. Register it with `crossalign.modalities.register`."""

    name: str  # manifest column prefix and CLI/HTTP field name: `image`, `image_xray`
    reader: Callable[[], ModalityReader]
    # Client value (a JSON field, base64 text, a data URL, uploaded bytes) -> what `reader.read`
    # takes, never a path; raises ClientError. Built-ins use `crossalign.modalities.client`.
    client: Callable[[Any], Any]
    inline: bool = False  # manifest/CLI values are the item itself (text), not file paths
    mime_types: tuple[str, ...] = ()  # data-URL types it owns: "image/*" (a major type) or exact ones
    suffixes: tuple[str, ...] = ()  # file extensions (tar shard members `<key>.<ext>`), no dot
    upload: bool = True  # may arrive as a multipart file field
    json_type: Any = str  # Python type of its field in JSON request bodies (pydantic validates it)
    help: str = ""  # what a value is, for CLI options and the HTTP schema
    same_shape: bool = False  # every value of one column must have one array shape (`data check`)


def resolve_path(value: Any, base_dir: Path | None) -> Path:
    if not isinstance(value, (str, Path)) or str(value).strip() == "":
        raise ReadError(value, "expected a file path")
    p = Path(str(value)).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if not p.exists():
        raise ReadError(value, f"file not found: {p}")
    if not p.is_file():
        raise ReadError(value, f"not a file: {p}")
    return p


def file_bytes(value: Any, base_dir: Path | None) -> bytes:
    """The file's bytes, refused (LimitError) before reading when it is larger than the limit."""
    from crossalign.modalities.limits import LimitError, limits  # limits imports this module

    p = resolve_path(value, base_dir)
    cap = limits().max_file_bytes
    try:
        size = p.stat().st_size
        if size > cap:
            raise LimitError(value, f"file of {size / 2**20:.0f} MB exceeds the {cap / 2**20:g} MB limit "
                                    "(CROSSALIGN_MAX_FILE_MB)")
        with open(p, "rb") as f:
            # read(n) allocates n bytes up front: ask for the size stat() gave (+1 to see growth)
            data = f.read(size + 1)
    except OSError as e:
        raise ReadError(value, f"unreadable file: {e}") from e
    if len(data) > cap:
        raise LimitError(value, f"file exceeds the {cap / 2**20:g} MB limit (CROSSALIGN_MAX_FILE_MB)")
    return data
