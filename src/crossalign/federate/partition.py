"""Which manifest rows live at which site: IID, Dirichlet non-IID over a key, or a `site` column.

Rows of one `group` always stay together (they are positives for each other); with `column:`, a
group goes to the site named on its first row. Every site computes
the same split from the same manifest, seed and site count, so a simulated site needs nothing but
its partition id; a real site with its own manifest skips this (`column:` or a site-local file).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crossalign.data.manifest import Manifest

__all__ = ["partition_rows", "site_manifest"]


def _units(m: Manifest) -> tuple[list[list[int]], list[Any]]:
    """Rows grouped by `group` (or alone), in first-seen order."""
    index: dict[Any, int] = {}
    units: list[list[int]] = []
    for i, r in enumerate(m.rows):
        g = r.get("group")
        key = ("g", g) if g is not None else ("r", i)
        if key not in index:
            index[key] = len(units)
            units.append([])
        units[index[key]].append(i)
    return units, [m.rows[u[0]] for u in units]


def partition_rows(m: Manifest, kind: str, arg: str | float | None, sites: int, seed: int = 0,
                   key: str = "label", min_rows: int = 8) -> list[np.ndarray]:
    """-> one sorted array of manifest row indices per site (disjoint, covering every row)."""
    units, first = _units(m)
    rng = np.random.default_rng(seed)
    if kind == "column":
        names = sorted({str(r.get(str(arg))) for r in first if r.get(str(arg)) is not None})
        missing = [m.row_number(i) for i, r in enumerate(m.rows) if r.get(str(arg)) is None]
        if missing:
            raise ValueError(f"{m.path}: rows {missing[:5]} have no '{arg}' value (needed by column:{arg})")
        if len(names) != sites:
            raise ValueError(f"{m.path}: column '{arg}' names {len(names)} sites {names}, not {sites}")
        owner = [names.index(str(r.get(str(arg)))) for r in first]
    elif kind == "iid":
        owner = list(rng.permutation(len(units)) % sites)
    elif kind == "dirichlet":
        labels = [r.get(key) for r in first]
        if all(v is None for v in labels):
            raise ValueError(f"{m.path}: dirichlet partition needs a '{key}' column")
        owner = _dirichlet(labels, float(arg), sites, rng, [len(u) for u in units], min_rows)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown partition kind {kind!r}")
    out: list[list[int]] = [[] for _ in range(sites)]
    for u, s in zip(units, owner):
        out[int(s)].extend(u)
    return [np.array(sorted(rows), dtype=np.int64) for rows in out]


def _dirichlet(labels: list[Any], alpha: float, sites: int, rng: np.random.Generator, sizes: list[int],
               min_rows: int, tries: int = 200) -> list[int]:
    """Per label, shares of its units over sites drawn from Dir(alpha) (Hsu et al. 2019); redrawn
    until every site holds at least `min_rows` rows (a site with nothing cannot train)."""
    by_label: dict[str, list[int]] = {}
    for i, v in enumerate(labels):
        by_label.setdefault(str(v), []).append(i)
    owner = [0] * len(labels)
    for _ in range(tries):
        for idx in by_label.values():
            idx = list(rng.permutation(idx))
            p = rng.dirichlet([alpha] * sites)
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for s, part in enumerate(np.split(np.array(idx, dtype=np.int64), cuts)):
                for i in part:
                    owner[int(i)] = s
        count = np.bincount(owner, weights=sizes, minlength=sites)
        if count.min() >= min(min_rows, sum(sizes) // sites):
            return owner
    raise ValueError(f"dirichlet:{alpha} left a site with fewer than {min_rows} rows after {tries} draws; "
                     "use a larger alpha or fewer sites")


def site_manifest(m: Manifest, rows: np.ndarray) -> Manifest:
    """The manifest a site holds: its rows only (each keeps its original row number for messages)."""
    return Manifest([{**m.rows[int(i)], "_row": m.row_number(int(i))} for i in rows], m.path, m.base_dir)
