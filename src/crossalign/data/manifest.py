"""Manifests: one row per paired item, one column per modality.

Formats: JSONL (`.jsonl`), CSV (`.csv`) or Parquet (`.parquet`). Columns:
- `id` (optional, unique; defaults to the row number),
- one column per modality view: `text`, `image`, `audio`, `sensor` (or another registered
  modality), or any name that starts with one of those and an underscore (`text_zh`, `image_xray`) — text inline, other values are paths
  relative to the manifest's folder (absolute paths work too),
- optional `group` (rows of one group are positives for each other), `label`, `split`
  (train/val/test), `tags` (per-token labels for tagging tasks).
Row numbers in messages are 1-based data rows (line N of a JSONL file, row N after a CSV header).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from crossalign.modalities import modality_names

__all__ = ["Manifest", "ManifestError", "load_manifest", "iter_jsonl", "write_manifest", "column_modality", "view_modality",
           "RESERVED_COLUMNS"]

RESERVED_COLUMNS = {"id", "group", "label", "split", "tags", "meta"}


def column_modality(column: str) -> str | None:
    """`text` -> text, `text_zh` -> text, `label` -> None."""
    if column in RESERVED_COLUMNS:
        return None
    for m in modality_names():
        if column == m or column.startswith(m + "_"):
            return m
    return None


def view_modality(view: Any) -> str:
    """A view's modality: as given, else from its column name (a `ViewSpec` of crossalign.config)."""
    m = view.modality or column_modality(view.column)
    if m is None:
        raise ValueError(f"column '{view.column}': cannot tell its modality; set modality explicitly")
    return m


@dataclass
class Manifest:
    rows: list[dict[str, Any]]
    path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rows[:1000]:
            seen.update(dict.fromkeys(r))
        return list(seen)

    @property
    def modality_columns(self) -> dict[str, str]:
        """{column: modality} for every column that holds a modality."""
        return {c: m for c in self.columns if (m := column_modality(c)) is not None}

    def ids(self) -> list[str]:
        return [str(r.get("id", i + 1)) for i, r in enumerate(self.rows)]

    def column(self, name: str) -> list[Any]:
        return [r.get(name) for r in self.rows]

    def select(self, split: str | None) -> "Manifest":
        """Rows of one split (`None` keeps all); each kept row remembers its original row number."""
        rows = []
        for i, r in enumerate(self.rows):
            if split is None or r.get("split") == split:
                rows.append({**r, "_row": r.get("_row", i + 1)})
        return Manifest(rows, self.path, self.base_dir)

    def row_number(self, i: int) -> int:
        return int(self.rows[i].get("_row", i + 1))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and v != v:  # NaN from CSV/Parquet empties
        return None
    return v


class ManifestError(ValueError):
    """A manifest that cannot be read as a table; the message names the file and row."""

    def __init__(self, path: Path, message: str, row: int | None = None):
        self.path, self.row = path, row
        super().__init__(f"{path}: {'' if row is None else f'row {row}: '}{message}")


def _decode_line(raw: bytes, path: Path, n: int) -> str:
    try:
        return raw.decode("utf-8-sig" if n == 1 else "utf-8")
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.start + 4]
        raise ManifestError(path, f"not UTF-8 text (byte {e.start + 1} of the line is {bad!r}); "
                                  "save the file as UTF-8", n) from None


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Stream a JSONL file's objects, each with its 1-based line number as `_row`. A UTF-8 byte
    order mark is skipped; a line that is not UTF-8 or not a JSON object is an error naming it."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = _decode_line(raw, path, n)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(path, f"invalid JSON ({e.msg} at character {e.colno})", n) from None
            except RecursionError:
                raise ManifestError(path, "invalid JSON (nested too deeply)", n) from None
            if not isinstance(obj, dict):
                raise ManifestError(path, f"expected a JSON object, got {type(obj).__name__}", n)
            yield obj | {"_row": n}


def _read_csv(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # Excel writes a byte order mark: not part of the first header
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        bad = data[e.start:e.start + 4]
        where = "the header" if line == 1 else f"line {line} (row {line - 1})"
        raise ManifestError(path, f"not UTF-8 text: {where} has byte {bad!r}; save the file as UTF-8") from None
    rows = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for n, rec in enumerate(reader, 1):
            extra = rec.pop(None, None)  # type: ignore[call-overload]  # values past the last header
            row = {k: (v if v != "" else None) for k, v in rec.items()} | {"_row": n}
            if extra:
                row["_overflow"] = len(extra)  # `data check` reports it
            rows.append(row)
    except csv.Error as e:
        raise ManifestError(path, f"malformed CSV ({e})", reader.line_num - 1) from None
    return rows


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if path.is_dir():
        for name in ("manifest.jsonl", "manifest.parquet", "manifest.csv"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise FileNotFoundError(f"{path}: no manifest.jsonl/.parquet/.csv in this folder")
    if not path.exists():
        raise FileNotFoundError(f"manifest not found: {path}")
    suffix = path.suffix.lower()
    rows: list[dict[str, Any]] = []
    if suffix in (".jsonl", ".json"):
        rows.extend(iter_jsonl(path))
    elif suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise ManifestError(path, f"unreadable Parquet file ({e})") from None
        for n, rec in enumerate(table.to_pylist(), 1):
            rows.append({k: _clean(v) for k, v in rec.items()} | {"_row": n})
    else:
        raise ManifestError(path, f"unsupported manifest format '{suffix}' (use .jsonl, .csv or .parquet)")
    return Manifest(rows, path, path.parent.resolve())


def write_manifest(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write JSONL atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if k not in ("_row", "_overflow")},
                               ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
