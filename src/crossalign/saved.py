"""Saved folders: one contract for every folder crossalign writes (run, task, bridge, export, index).

Each folder holds `crossalign.json`, which names what the folder is and what it holds, as
sentence-transformers' `modules.json` does:

    {"kind": "alignment-run", "format": 1, "parts": [{"name": "config", "path": "config.json"}, ...],
     "weights": ["model", "best", "last"]}

`parts` are the folder's fixed files; `weights` the checkpoint names (`<name>.safetensors`) a
loader falls back through after the one asked for (`weights_file`).

Weights are safetensors, settings JSON; no pickle. This module owns how they are written
(temporary file + `os.replace`, so a reader never sees half a file; `atomic_folder` for a folder
written in one go, so a failure leaves no partial folder) and which weights file a loader reads
(`weights_file`). Folders written before `crossalign.json` existed still load: `read_contract`
recognises them by the file each kind always had (`LEGACY_MARKERS`).

A leaf: it imports no other crossalign room, and no torch until weights are written or read.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["CONTRACT_FILE", "KINDS", "LEGACY_MARKERS", "WEIGHTS_ORDER", "FolderError", "atomic_folder",
           "atomic_write_json", "atomic_write_text", "fsync_path", "read_contract", "read_json", "save_weights",
           "weights_file", "write_contract"]

CONTRACT_FILE = "crossalign.json"
# kind -> what it is (for messages)
KINDS: dict[str, str] = {
    "alignment-run": "a crossalign run",
    "task-run": "a crossalign task run",
    "bridge": "a crossalign bridge",
    "export": "a crossalign export",
    "index": "a crossalign index",
}
# The file each kind always had: how a folder from before crossalign.json is recognised.
LEGACY_MARKERS: dict[str, str] = {
    "alignment-run": "config.json",
    "task-run": "task.json",
    "bridge": "bridge.json",
    "export": "export.json",
    "index": "index.json",
}
# After the name asked for, the weights a loader falls back to, in order.
WEIGHTS_ORDER = ("model", "best", "last")


class FolderError(ValueError):
    """A saved folder (or one of its files) that cannot be read: names the file and what is wrong."""


def _tmp_for(path: Path) -> Path:
    # unique per writer: two processes saving into one folder never share a temporary file
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def fsync_path(p: Path) -> None:
    """Flush a file or a folder (its entries: a rename made durable) to the disk."""
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Write `path` whole or not at all. `fsync`: durable across a power cut too (index commits)."""
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if fsync:
        fsync_path(path.parent)
    return path


def atomic_write_json(path: str | Path, obj: Any, *, fsync: bool = False, ensure_ascii: bool = True) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=ensure_ascii, default=str), fsync=fsync)


def save_weights(path: str | Path, state: Mapping[str, Any], metadata: dict[str, str] | None = None) -> Path:
    """A state dict -> one safetensors file, atomically (tensors made contiguous and moved to the CPU)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = _tmp_for(path)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def weights_file(folder: str | Path, which: str = "best", order: tuple[str, ...] = WEIGHTS_ORDER) -> Path:
    """`<which>.safetensors`, else the first of `order` that exists (the one order every loader uses)."""
    folder = Path(folder)
    for name in (which, *order):
        f = folder / f"{name}.safetensors"
        if f.exists():
            return f
    raise FileNotFoundError(f"{folder}: no {which}.safetensors / {order[0]}.safetensors")


def read_json(path: str | Path, what: str = "") -> dict[str, Any]:
    """A JSON object from a saved folder; a missing, damaged or non-object file is an error naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path.parent}: not {what or 'a crossalign folder'} (no {path.name})")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FolderError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise FolderError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


def write_contract(folder: str | Path, kind: str, fmt: int, parts: list[str] | None = None,
                   **extra: Any) -> dict[str, Any]:
    """Write (or update) `crossalign.json`: the folder's kind, format and parts. Parts already listed
    stay (checkpoints are added one by one); a folder of another kind is refused, not overwritten."""
    if kind not in KINDS:
        raise ValueError(f"unknown folder kind '{kind}'; known: {', '.join(KINDS)}")
    folder = Path(folder)
    path = folder / CONTRACT_FILE
    old = read_json(path) if path.exists() else {}
    if old and old.get("kind") != kind:
        raise FolderError(f"{path}: this folder is {old.get('kind')!r}; refusing to write {kind!r} into it")
    listed = [p for p in old.get("parts", []) if isinstance(p, dict) and "path" in p]
    seen = {p["path"] for p in listed}
    for p in parts or []:
        if p not in seen:
            listed.append({"name": Path(p).stem if "." in p else p, "path": p})
            seen.add(p)
    doc = {"kind": kind, "format": int(fmt), "parts": listed, **{k: v for k, v in old.items()
                                                                 if k not in ("kind", "format", "parts")}, **extra}
    atomic_write_json(path, doc)
    return doc


def read_contract(folder: str | Path, kinds: tuple[str, ...], max_format: int | None = None) -> dict[str, Any]:
    """-> the folder's `crossalign.json` ({"kind", "format", "parts", ...}), checked to be one of
    `kinds` and no newer than `max_format`. A folder from before the contract is recognised by
    its kind's marker file (then {"kind", "format": 0, "parts": [], "legacy": True})."""
    folder = Path(folder)
    path = folder / CONTRACT_FILE
    want = " or ".join(KINDS[k] for k in kinds)
    if not path.exists():
        for k in kinds:
            if (folder / LEGACY_MARKERS[k]).exists():
                return {"kind": k, "format": 0, "parts": [], "legacy": True}
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not {want} (no such folder)")
        raise FileNotFoundError(f"{folder}: not {want} (no {CONTRACT_FILE} or "
                                f"{' / '.join(LEGACY_MARKERS[k] for k in kinds)})")
    doc = read_json(path, want)
    kind, fmt = doc.get("kind"), doc.get("format")
    if kind not in kinds:
        raise FolderError(f"{path}: kind {kind!r}, expected {' or '.join(repr(k) for k in kinds)}")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise FolderError(f"{path}: 'format' must be a positive integer, got {fmt!r}")
    if max_format is not None and fmt > max_format:
        raise FolderError(f"{path}: format {fmt} is newer than this crossalign reads ({max_format}); upgrade it")
    if not isinstance(doc.get("parts", []), list):
        raise FolderError(f"{path}: 'parts' must be a list")
    return doc


@contextmanager
def atomic_folder(dest: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Write a whole folder at once: yields a temporary sibling to fill; on success it becomes
    `dest` (one rename), on any failure it is removed and `dest` is left as it was. `replace`: an
    existing `dest` is swapped out (else refused, so nothing a user made is lost)."""
    dest = Path(dest)
    if dest.exists() and not replace:
        raise FileExistsError(f"{dest}: already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
