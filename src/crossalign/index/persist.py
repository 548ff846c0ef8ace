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
import re
import shutil
from pathlib import Path
from typing import Any

import faiss

from crossalign import saved
from crossalign.saved import fsync_path
from crossalign.index.backends import IndexParams, supports_remove
from crossalign.index.identity import file_sha256
from crossalign.index.meta import MetaTable

__all__ = ["INDEX_FORMAT", "CorruptIndexError", "write_generation", "read_generation", "read_record",
           "validate_record", "atomic_write_json"]

INDEX_FORMAT = 1
INDEX_KIND = "index"


class CorruptIndexError(RuntimeError):
    """An index folder failed verification (missing, truncated or altered files)."""


def atomic_write_json(path: Path, obj: Any) -> None:
    """Durable and atomic (fsync of the file and its folder): the index's commit point."""
    saved.atomic_write_json(path, obj, fsync=True, ensure_ascii=False)


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
    if not (root / saved.CONTRACT_FILE).exists():  # the folder's kind; index.json stays its commit record
        saved.write_contract(root, INDEX_KIND, INDEX_FORMAT, ["index.json"])
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


_GEN_DIR = re.compile(r"^gen-\d{6}$")
_FILE = re.compile(r"^(vectors-[A-Za-z0-9_.-]+\.faiss|meta\.jsonl)$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


def _typed(rec: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(rec, dict) or key not in rec:
        raise CorruptIndexError(f"{where}: missing field '{key}'")
    v = rec[key]
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise CorruptIndexError(f"{where}: field '{key}' has the wrong type ({type(v).__name__})")
    return v


def validate_record(rec: Any, where: str) -> IndexParams:
    """Check an index.json record's schema, types and file names before anything is opened from
    it: a flipped bit must give CorruptIndexError naming the file, never a KeyError or a read of
    some other path. Returns the index parameters."""
    if not isinstance(rec, dict):
        raise CorruptIndexError(f"{where}: not a JSON object")
    if rec.get("format") != INDEX_FORMAT:
        raise CorruptIndexError(f"{where}: index format {rec.get('format')!r}, this crossalign reads {INDEX_FORMAT}")
    gen = _typed(rec, "generation", int, where)
    gdir = _typed(rec, "dir", str, where)
    if not _GEN_DIR.match(gdir) or int(gdir[4:]) != gen:
        raise CorruptIndexError(f"{where}: generation folder {gdir!r} does not match generation {gen}")
    dim = _typed(rec, "dim", int, where)
    if not 1 <= dim <= 65536:
        raise CorruptIndexError(f"{where}: dim {dim} out of range")
    files = _typed(rec, "files", dict, where)
    for fname, info in files.items():
        if not _FILE.match(fname):
            raise CorruptIndexError(f"{where}: unexpected file name {fname!r}")
        size = _typed(info, "bytes", int, f"{where}: files.{fname}")
        sha = _typed(info, "sha256", str, f"{where}: files.{fname}")
        if size < 0 or not _SHA.match(sha):
            raise CorruptIndexError(f"{where}: files.{fname}: bad size or checksum")
    if "meta.jsonl" not in files:
        raise CorruptIndexError(f"{where}: files lacks meta.jsonl")
    for m, info in _typed(rec, "subindexes", dict, where).items():
        f = _typed(info, "file", str, f"{where}: subindexes.{m}")
        _typed(info, "ntotal", int, f"{where}: subindexes.{m}")
        if f != f"vectors-{m}.faiss" or f not in files:
            raise CorruptIndexError(f"{where}: subindexes.{m} names {f!r}, not one of its files")
    counts = _typed(rec, "counts", dict, where)
    _typed(counts, "rows", int, f"{where}: counts")
    run = rec.get("run")
    if run is not None:
        from crossalign.index.identity import RunIdentity

        try:
            RunIdentity.from_dict(run)
        except (TypeError, ValueError) as e:
            raise CorruptIndexError(f"{where}: run identity unreadable ({e})") from None
    try:
        return IndexParams.from_dict(_typed(rec, "params", dict, where))
    except (TypeError, ValueError) as e:
        raise CorruptIndexError(f"{where}: params unreadable ({e})") from None


def read_record(root: Path) -> dict[str, Any]:
    where = root / "index.json"
    try:
        rec = json.loads(where.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CorruptIndexError(f"{where}: unreadable ({e})") from e
    validate_record(rec, str(where))
    return rec


def read_generation(
    root: Path, verify: bool = True
) -> tuple[dict[str, Any], MetaTable, dict[str, faiss.Index]]:
    """The current generation's record, metadata and FAISS indexes, after checking every file.
    A file of the generation that is missing raises FileNotFoundError (a writer may have retired
    the generation meanwhile: the caller re-reads index.json); anything damaged CorruptIndexError."""
    rec = read_record(root)
    params = IndexParams.from_dict(rec["params"])
    gdir = root / rec["dir"]
    for fname, info in rec["files"].items():
        f = gdir / fname
        try:
            size = f.stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"{f}: missing (index generation {rec['generation']} is incomplete)") from None
        if size != info["bytes"] or (verify and file_sha256(f) != info["sha256"]):
            raise CorruptIndexError(
                f"{f}: size or checksum does not match index.json (file damaged after "
                f"it was written); rebuild with `crossalign index build --overwrite`"
            )
    try:
        meta = MetaTable.read(gdir / "meta.jsonl")
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise CorruptIndexError(f"{gdir / 'meta.jsonl'}: unreadable ({e})") from e
    subs = {}
    for m, info in rec["subindexes"].items():
        f = gdir / info["file"]
        try:
            subs[m] = faiss.read_index(str(f))
        except RuntimeError as e:
            if not f.exists():
                raise FileNotFoundError(f"{f}: missing") from None
            raise CorruptIndexError(f"{f}: FAISS cannot read it ({str(e).splitlines()[0]})") from None
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
