"""`crossalign data check`: every problem in a manifest, with its row number and column."""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from crossalign.data.manifest import RESERVED_COLUMNS, Manifest, column_modality
from crossalign.modalities import ReadError, get_reader, modality, modality_names

__all__ = ["Problem", "check_manifest", "check_value", "header_problems", "unknown_columns"]


@dataclass(frozen=True)
class Problem:
    row: int  # 1-based data row
    column: str
    message: str

    def __str__(self) -> str:
        where = "header" if self.row == 0 else f"row {self.row}"
        return f"{where}, column '{self.column}': {self.message}"


def check_value(modality: str, value: Any, base_dir: Any) -> tuple[Any, str | None]:
    """-> (raw item, None) or (None, message)."""
    try:
        return get_reader(modality).read(value, base_dir), None
    except ReadError as e:
        return None, e.reason
    except Exception as e:  # a reader bug must not stop the whole check
        return None, f"{type(e).__name__}: {e}"


_INVISIBLE = ("Cf", "Cc", "Zs", "Zl", "Zp")


def header_problems(columns: list[str]) -> list[Problem]:
    """Headers that are probably not what their author meant: invisible or surrounding characters
    (a byte order mark, a zero-width space, spaces), or a known column in other letter case."""
    known = {*RESERVED_COLUMNS, *modality_names()}
    out = []
    for c in columns:
        if c.startswith("_"):  # our own bookkeeping (_row, _overflow)
            continue
        shown = c.encode("unicode_escape").decode("ascii")
        if not c.strip():
            out.append(Problem(0, shown, "empty column name"))
        elif c != c.strip() or any(unicodedata.category(ch) in _INVISIBLE and ch != " " for ch in c):
            out.append(Problem(0, shown, f"column name has invisible or surrounding characters; "
                                         f"did you mean '{''.join(ch for ch in c.strip() if ch.isprintable())}'?"))
        elif column_modality(c) is None and c not in known and (
                c.lower() in known or column_modality(c.lower()) is not None):
            out.append(Problem(0, c, f"unknown column; did you mean '{c.lower()}'? (names are case-sensitive)"))
    return out


def unknown_columns(columns: list[str]) -> list[str]:
    """Columns that are neither a view nor a reserved column: kept as metadata, otherwise unused."""
    return [c for c in columns if not c.startswith("_") and c not in RESERVED_COLUMNS
            and column_modality(c) is None]


def check_manifest(manifest: Manifest, columns: dict[str, str] | None = None,
                   progress: Callable[[int], Any] | None = None) -> list[Problem]:
    """Read every value of every modality column; report unreadable/empty/corrupt values,
    arrays whose shape differs from the column's usual shape (modalities with `same_shape`, such as
    sensor), and duplicate ids."""
    columns = columns or manifest.modality_columns
    problems: list[Problem] = header_problems(manifest.columns)
    if not columns:
        problems.append(Problem(0, "*", f"no modality columns ({', '.join(modality_names())}, or text_xx ...)"))
    ids = Counter(str(r["id"]) for r in manifest.rows if r.get("id") is not None)
    first_seen: dict[str, int] = {}
    shapes: dict[str, dict[int, tuple[int, ...]]] = {c: {} for c, m in columns.items() if modality(m).same_shape}
    for i, r in enumerate(manifest.rows):
        n = manifest.row_number(i)
        rid = r.get("id")
        if rid is not None and ids[str(rid)] > 1:
            if str(rid) in first_seen:
                problems.append(Problem(n, "id", f"duplicate id '{rid}' (first at row {first_seen[str(rid)]})"))
            else:
                first_seen[str(rid)] = n
        for col, mod in columns.items():
            if col not in r:
                problems.append(Problem(n, col, "missing value"))
                continue
            raw, err = check_value(mod, r[col], manifest.base_dir)
            if err:
                problems.append(Problem(n, col, err))
            elif col in shapes:
                shapes[col][n] = tuple(np.asarray(raw).shape)
        if r.get("_overflow"):
            problems.append(Problem(n, "*", f"{r['_overflow']} more values than there are headers"))
        if progress:
            progress(1)
    for col, by_row in shapes.items():
        if not by_row:
            continue
        usual, _ = Counter(by_row.values()).most_common(1)[0]
        for n, shp in by_row.items():
            if shp != usual:
                problems.append(Problem(n, col, f"wrong array shape {shp}; this column's arrays are {usual}"))
    return sorted(problems, key=lambda p: (p.row, p.column))
