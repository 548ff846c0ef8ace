"""Data at scale: sharded manifests streamed row by row, rank shares, and a streaming feature store.

A sharded manifest is a folder (or glob, or list) of files, each one of
- `.jsonl` — one JSON object per line (read line by line),
- `.parquet` — read one row group at a time,
- `.tar` — WebDataset-style: members `<key>.<ext>` grouped by key; `.txt` -> column `text`,
  `.json` -> its fields, an extension a modality claims (`Modality.suffixes`: `jpg`/`png` ->
  `image`, `wav`/`flac` -> `audio`, `npy` -> `sensor`) -> that column, holding the member's bytes
  (the readers take bytes), any other extension -> a column of that name.

Nothing is ever loaded whole: `iter_rows` yields rows lazily, `encode_stream` encodes them in
fixed-size chunks and appends each finished chunk to a `FeatureStore` on disk, so peak memory is
set by the chunk size, not by the collection size. Under torch distributed each rank takes whole
shards (`rank::world` of the sorted file list) when there are enough of them, and every world-th
row otherwise, so the ranks' parts are disjoint and together cover everything.
"""

from __future__ import annotations

import glob as _glob
import json
import os
import tarfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossalign.data.manifest import Manifest, iter_jsonl
from crossalign.modalities import modality, modality_names, modality_of_suffix

__all__ = ["FeatureStore", "encode_stream", "iter_rows", "rank_share", "shard_files"]

_SUFFIXES = (".jsonl", ".parquet", ".tar")


def shard_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """A folder, a glob pattern, one file or a list of them -> the sorted shard files."""
    if isinstance(source, (list, tuple)):
        files = [Path(s) for s in source]
    else:
        s = str(source)
        p = Path(s)
        if p.is_dir():
            files = [f for f in p.iterdir() if f.suffix in _SUFFIXES]
        elif any(ch in s for ch in "*?["):
            files = [Path(f) for f in _glob.glob(s)]
        else:
            files = [p]
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"shard not found: {f}")
        if f.suffix not in _SUFFIXES:
            raise ValueError(f"{f}: unsupported shard format '{f.suffix}' (use .jsonl, .parquet or .tar)")
    if not files:
        raise FileNotFoundError(f"{source}: no .jsonl/.parquet/.tar shards")
    return sorted(files)


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    return iter_jsonl(path)


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    n = 0
    for g in range(pf.num_row_groups):  # one row group in memory at a time
        for rec in pf.read_row_group(g).to_pylist():
            n += 1
            yield {k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()} | {"_row": n}


def _tar_rows(path: Path) -> Iterator[dict[str, Any]]:
    """WebDataset convention: consecutive members sharing the part before the first dot form a row."""
    cur: dict[str, Any] | None = None
    key = None
    n = 0
    with tarfile.open(path, "r|*") as tf:  # streaming mode: no index of the whole archive
        for m in tf:
            if not m.isfile():
                continue
            name = os.path.basename(m.name)
            k, _, ext = name.partition(".")
            f = tf.extractfile(m)
            data = f.read() if f is not None else b""
            if k != key:
                if cur is not None:
                    yield cur
                n += 1
                key, cur = k, {"id": k, "_row": n}
            assert cur is not None
            ext = ext.lower()
            if ext == "json":
                try:
                    cur.update(json.loads(data))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: member {m.name}: invalid JSON ({e.msg})") from e
            else:
                col = modality_of_suffix(ext) or ext
                # inline modalities (text) hold the item itself; the others' readers take bytes
                cur[col] = data.decode("utf-8") if col in modality_names() and modality(col).inline else data
    if cur is not None:
        yield cur


_READERS: dict[str, Callable[[Path], Iterator[dict[str, Any]]]] = {
    ".jsonl": _jsonl_rows, ".parquet": _parquet_rows, ".tar": _tar_rows}


def iter_rows(source: str | Path | Sequence[str | Path], rank: int = 0, world: int = 1) -> Iterator[dict[str, Any]]:
    """Stream the rows of a sharded manifest (this rank's part of them). Each row carries `_shard`
    (file name) and `_row` (1-based row in that file), so errors can name both."""
    files = shard_files(source)
    by_file = len(files) >= world and len(files) % world == 0
    mine = files[rank::world] if by_file else files
    i = 0
    for f in mine:
        for r in _READERS[f.suffix](f):
            if by_file or i % world == rank:
                yield r | {"_shard": f.name}
            i += 1


def rank_share(m: Manifest, rank: int, world: int) -> Manifest:
    """Every world-th row starting at `rank`; rows keep their original row numbers."""
    rows = [{**r, "_row": r.get("_row", i + 1)} for i, r in enumerate(m.rows) if i % world == rank]
    return Manifest(rows, m.path, m.base_dir)


@dataclass
class FeatureStore:
    """Append-only on-disk features: `part-<tag>.npy` (n, *shape) float32 + `part-<tag>.ids` (one id
    a line). Each part is written under a temporary name and renamed, ids last, so concurrent ranks
    and killed runs never leave a visible half-written part. Read back memory-mapped."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def append(self, ids: list[str], feats: np.ndarray, tag: str) -> None:
        if len(ids) != len(feats):
            raise ValueError("ids and features differ in length")
        tmp = self.root / f".{uuid.uuid4().hex}"
        np.save(f"{tmp}.npy", np.ascontiguousarray(feats, dtype=np.float32))
        Path(f"{tmp}.ids").write_text("\n".join(ids) + "\n")
        os.replace(f"{tmp}.npy", self.root / f"part-{tag}.npy")
        os.replace(f"{tmp}.ids", self.root / f"part-{tag}.ids")

    def parts(self) -> list[str]:
        return sorted(p.name[5:-4] for p in self.root.glob("part-*.ids") if (p.with_suffix(".npy")).exists())

    def ids(self) -> list[str]:
        return [i for t in self.parts() for i in (self.root / f"part-{t}.ids").read_text().split("\n") if i]

    def load(self) -> tuple[list[str], np.ndarray]:
        """All ids and features, sorted by id (the order does not depend on how many ranks wrote)."""
        ids, arrs = [], []
        for t in self.parts():
            ids += [i for i in (self.root / f"part-{t}.ids").read_text().split("\n") if i]
            arrs.append(np.load(self.root / f"part-{t}.npy", mmap_mode="r"))
        if not arrs:
            return [], np.zeros((0,), np.float32)
        order = np.argsort(np.array(ids, dtype=object), kind="stable")
        return [ids[i] for i in order], np.concatenate(arrs)[order]


def encode_stream(rows: Iterable[dict[str, Any]], column: str, embed: Callable[[list[Any]], np.ndarray],
                  store: FeatureStore, *, read: Callable[[Any], Any], chunk: int = 4096, rank: int = 0,
                  progress: Callable[[int], None] | None = None) -> int:
    """Read, embed and append rows chunk by chunk; returns how many rows were stored.

    `read(value)` turns a manifest value into the raw item (a modality reader); `embed(raws)` ->
    (n, ...) array. Memory holds one chunk of raw items and features at a time.
    """
    ids: list[str] = []
    raws: list[Any] = []
    done, part = 0, 0

    def flush() -> None:
        nonlocal ids, raws, done, part
        if ids:
            store.append(ids, np.asarray(embed(raws)), tag=f"r{rank:03d}-{part:06d}")
            done += len(ids)
            part += 1
            if progress:
                progress(len(ids))
        ids, raws = [], []

    for r in rows:
        if column not in r:
            raise ValueError(f"{r.get('_shard', '?')}: row {r.get('_row', '?')}: no column '{column}'")
        raws.append(read(r[column]))
        ids.append(str(r.get("id", f"{r.get('_shard', '')}:{r.get('_row')}")))
        if len(ids) >= chunk:
            flush()
    flush()
    return done
