"""Index generations on disk: written whole, committed atomically, verified on open.

On disk (a folder):
    index.json            the commit record: format, run identity, dim, metric, params, counts,
                          the current generation's folder and a sha256 + size of each of its files
    gen-000007/           immutable once committed
        vectors-image.faiss, vectors-audio.faiss, ...   (FAISS ids = metadata row numbers)
        meta.jsonl        one line per row (deleted rows stay, flagged, so ids never shift)
    .lock                 writers hold an exclusive flock while they change the index

A commit writes a fresh generation folder, fsyncs it, then atomically replaces index.json
(write to a temporary file, fsync, rename). A kill at any point leaves index.json naming the
previous, complete generation; opening verifies checksums and counts and refuses damaged files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import faiss

from crossalign.index.backends import IndexParams, supports_remove
from crossalign.index.identity import file_sha256
from crossalign.index.meta import MetaTable

__all__ = ["INDEX_FORMAT", "CorruptIndexError", "write_generation", "read_generation", "atomic_write_json"]

INDEX_FORMAT = 1


class CorruptIndexError(RuntimeError):
    """An index folder failed verification (missing, truncated or altered files)."""


def fsync_path(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_generation(
    root: Path, gen: int, subs: dict[str, faiss.Index], meta: MetaTable, header: dict[str, Any]
) -> dict[str, Any]:
    """Write generation `gen` and make it current. Returns the new index.json record."""
    gdir = root / f"gen-{gen:06d}"
    if gdir.exists():
        shutil.rmtree(gdir)  # left over by a writer killed before its commit
    gdir.mkdir(parents=True)
    files: dict[str, dict[str, Any]] = {}
    subinfo: dict[str, dict[str, Any]] = {}
    for m, idx in subs.items():
        fname = f"vectors-{m}.faiss"
        faiss.write_index(idx, str(gdir / fname))
        subinfo[m] = {"file": fname, "ntotal": int(idx.ntotal)}
        files[fname] = {}
    meta.write(gdir / "meta.jsonl")
    files["meta.jsonl"] = {}
    for fname in files:
        f = gdir / fname
        fsync_path(f)
        files[fname] = {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
    fsync_path(gdir)
    rec = {
        "format": INDEX_FORMAT,
        "generation": gen,
        "dir": gdir.name,
        **header,
        "counts": {"items": meta.live_count, "rows": len(meta), "by_modality": meta.modalities()},
        "subindexes": subinfo,
        "files": files,
    }
    atomic_write_json(root / "index.json", rec)  # the commit point
    collect_garbage(root, keep={gen, gen - 1})
    return rec


def collect_garbage(root: Path, keep: set[int]) -> None:
    # The previous generation stays one more round, for readers that opened it a moment ago.
    for d in root.glob("gen-*"):
        try:
            n = int(d.name[4:])
        except ValueError:
            continue
        if n not in keep and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


def read_generation(
    root: Path, verify: bool = True
) -> tuple[dict[str, Any], MetaTable, dict[str, faiss.Index]]:
    """The current generation's record, metadata and FAISS indexes, after checking every file."""
    try:
        rec = json.loads((root / "index.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptIndexError(f"{root / 'index.json'}: unreadable ({e})") from e
    if rec.get("format") != INDEX_FORMAT:
        raise CorruptIndexError(
            f"{root}: index format {rec.get('format')!r}, this crossalign reads {INDEX_FORMAT}"
        )
    gdir = root / rec["dir"]
    for fname, info in rec["files"].items():
        f = gdir / fname
        if not f.exists():
            raise CorruptIndexError(f"{f}: missing (index generation {rec['generation']} is incomplete)")
        if f.stat().st_size != info["bytes"] or (verify and file_sha256(f) != info["sha256"]):
            raise CorruptIndexError(
                f"{f}: size or checksum does not match index.json (file damaged after "
                f"it was written); rebuild with `crossalign index build --overwrite`"
            )
    meta = MetaTable.read(gdir / "meta.jsonl")
    params = IndexParams.from_dict(rec["params"])
    subs = {m: faiss.read_index(str(gdir / info["file"])) for m, info in rec["subindexes"].items()}
    if len(meta) != rec["counts"]["rows"]:
        raise CorruptIndexError(
            f"{gdir / 'meta.jsonl'}: {len(meta)} rows, index.json says {rec['counts']['rows']}"
        )
    mods, dele = meta.cols["modality"], meta.deleted
    for m, idx in subs.items():
        # Removed vectors leave FAISS; HNSW keeps them as tombstones.
        expect = sum(1 for mm, d in zip(mods, dele) if mm == m and (not d or not supports_remove(params)))
        if idx.ntotal != expect or idx.d != rec["dim"]:
            raise CorruptIndexError(
                f"{gdir / rec['subindexes'][m]['file']}: holds {idx.ntotal} vectors of dim "
                f"{idx.d}, metadata expects {expect} of dim {rec['dim']}"
            )
    return rec, meta, subs
