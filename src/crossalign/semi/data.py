"""Unpaired items: rows that hold only some views, separate per-view manifests, or a paired
fraction of a fully paired table (`--paired-fraction`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossalign.data.check import Problem
from crossalign.data.extract import ColumnFeatures, encode_column
from crossalign.data.features import FeatureTable, ViewSpec, build_view_encoder
from crossalign.data.manifest import Manifest, load_manifest, view_modality
from crossalign.encoders import Encoder

__all__ = [
    "UNPAIRED_SPLIT",
    "SemiData",
    "Unpaired",
    "collection_features",
    "load_semi_data",
    "paired_fraction",
    "read_seed_pairs",
]

log = logging.getLogger(__name__)

UNPAIRED_SPLIT = "unpaired"  # split name given to training rows whose pairing is dropped


@dataclass
class Unpaired:
    """Unpaired training items per view: {column: (U_c, *feature shape)}."""

    features: dict[str, np.ndarray] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {c: len(f) for c, f in self.features.items()}

    def total(self) -> int:
        return sum(len(f) for f in self.features.values())


@dataclass
class SemiData:
    table: FeatureTable  # complete rows (every view); unpaired training rows carry split "unpaired"
    unpaired: Unpaired


def _relabel(table: FeatureTable, rows: set[int], split: str) -> FeatureTable:
    """A copy of `table` whose manifest rows in `rows` (manifest indices) carry `split`."""
    new = [dict(r, split=split) if i in rows else r for i, r in enumerate(table.manifest.rows)]
    m = Manifest(new, table.manifest.path, table.manifest.base_dir)
    return FeatureTable(m, table.rows, table.features, table.specs, table.problems)


def paired_fraction(table: FeatureTable, fraction: float, seed: int = 0, train_split: str = "train",
                    columns: list[str] | None = None) -> SemiData:
    """Keep a seeded `fraction` of the training rows paired; every other training row becomes one
    unpaired item of one of its views (chosen by the seed). Validation and test rows are untouched."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"paired fraction must be in [0, 1], got {fraction}")
    cols = columns or list(table.features)
    rng = np.random.default_rng(seed)
    tr = np.nonzero(np.array([s == train_split for s in table.meta("split")]))[0]  # positions in table
    n_keep = round(fraction * len(tr))
    perm = rng.permutation(tr)
    drop = np.sort(perm[n_keep:])
    keep_view = rng.integers(0, len(cols), len(drop))  # (n_drop,) which view each dropped row keeps
    unp = Unpaired({c: table.features[c][drop[keep_view == k]] for k, c in enumerate(cols)})
    rows = {int(table.rows[i]) for i in drop}
    return SemiData(_relabel(table, rows, UNPAIRED_SPLIT), unp)


def _absent(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _encode(m: Manifest, views: list[ViewSpec], encoders: dict[str, Encoder], batch_size: int,
            progress: bool) -> dict[str, ColumnFeatures]:
    out = {}
    for v in views:
        if v.column not in m.columns:
            continue
        enc = encoders.get(v.column) or build_view_encoder(v, m)
        encoders[v.column] = enc
        out[v.column] = encode_column(m, v.column, enc, batch_size=batch_size, progress=progress,
                                      modality=view_modality(v))
    return out


def load_semi_data(m: Manifest, views: list[ViewSpec], *, unpaired: list[str | Path] = (),
                   encoders: dict[str, Encoder] | None = None, batch_size: int = 32,
                   progress: bool = False, train_split: str = "train") -> tuple[SemiData, dict[str, Encoder]]:
    """Encode a manifest whose rows may lack some views, plus manifests of unpaired items.

    Rows holding every view form the paired table. A training row holding only some views gives one
    unpaired item per view it holds; validation/test rows must be complete (others are skipped, as
    rows that failed to read are). Every readable row of an `unpaired` manifest gives one item per
    view column it holds (its split is ignored)."""
    encoders = dict(encoders or {})
    cols = [v.column for v in views]
    feats = _encode(m, views, encoders, batch_size, progress)
    missing = [c for c in cols if c not in feats]
    if missing:
        raise ValueError(f"{m.path}: no column(s) {missing}; columns are {m.columns}")
    have = {c: {int(r): j for j, r in enumerate(cf.rows)} for c, cf in feats.items()}
    complete = np.array(sorted(set.intersection(*(set(h) for h in have.values()))), dtype=np.int64)
    problems: list[Problem] = []
    index = _row_index(m)
    for c, cf in feats.items():  # an absent value is not a problem; a value that fails to read is
        problems += [p for p in cf.problems if not _absent(m.rows[index[p.row]].get(c))]
    table = FeatureTable(m, complete, {c: feats[c].features[[have[c][int(r)] for r in complete]] for c in cols},
                         {c: cf.spec for c, cf in feats.items()}, sorted(problems, key=lambda p: (p.row, p.column)))
    done = set(complete.tolist())
    parts: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    for c in cols:
        rows = [r for r, j in have[c].items() if r not in done and m.rows[r].get("split") == train_split]
        parts[c].append(feats[c].features[[have[c][r] for r in sorted(rows)]])
    for path in unpaired:
        um = load_manifest(path)
        views_here = [v for v in views if v.column in um.columns]
        if not views_here:
            raise ValueError(f"{um.path}: none of the view columns {cols} (columns are {um.columns})")
        uindex = _row_index(um)
        for c, cf in _encode(um, views_here, encoders, batch_size, progress).items():
            parts[c].append(cf.features)
            table.problems.extend(p for p in cf.problems if not _absent(um.rows[uindex[p.row]].get(c)))
    shapes = {c: table.features[c].shape[1:] for c in cols}
    unp = Unpaired({c: np.concatenate(p) if p else np.zeros((0, *shapes[c]), np.float32) for c, p in parts.items()})
    log.info("paired rows %d, unpaired items %s", len(complete), unp.counts())
    return SemiData(table, unp), encoders


def _row_index(m: Manifest) -> dict[int, int]:
    """1-based row number (what Problems carry) -> manifest index."""
    return {m.row_number(i): i for i in range(len(m.rows))}


def collection_features(path: str | Path, view: ViewSpec, batch_size: int = 32,
                        progress: bool = False) -> tuple[list[str], np.ndarray, list[Problem]]:
    """One view of one manifest (an unpaired collection): (ids of the readable rows, (N, ...) features,
    problems). Ids are the `id` column, else 1-based row numbers."""
    m = load_manifest(path)
    if view.column not in m.columns:
        raise ValueError(f"{m.path}: no column '{view.column}' (columns are {m.columns})")
    cf = encode_column(m, view.column, build_view_encoder(view, m), batch_size=batch_size, progress=progress,
                       modality=view_modality(view))
    ids = m.ids()
    return [ids[int(r)] for r in cf.rows], cf.features, cf.problems


def read_seed_pairs(path: str | Path, ids_a: list[str], ids_b: list[str]) -> np.ndarray:
    """A CSV (header `a,b`) or JSONL ({"a": .., "b": ..}) of known pairs, by id -> (s, 2) indices."""
    m = load_manifest(path)
    pos_a, pos_b = {x: i for i, x in enumerate(ids_a)}, {x: i for i, x in enumerate(ids_b)}
    out = []
    for i, r in enumerate(m.rows):
        a, b = r.get("a"), r.get("b")
        if a is None or b is None:
            raise ValueError(f"{m.path}: row {m.row_number(i)}: needs fields 'a' and 'b' (ids of A and B)")
        if str(a) not in pos_a:
            raise ValueError(f"{m.path}: row {m.row_number(i)}: id a={a!r} is not a readable row of A")
        if str(b) not in pos_b:
            raise ValueError(f"{m.path}: row {m.row_number(i)}: id b={b!r} is not a readable row of B")
        out.append((pos_a[str(a)], pos_b[str(b)]))
    return np.array(out, np.int64).reshape(-1, 2)
