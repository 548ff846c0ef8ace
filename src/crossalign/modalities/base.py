"""The contract every modality reader follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

__all__ = ["ReadError", "ModalityReader"]


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
