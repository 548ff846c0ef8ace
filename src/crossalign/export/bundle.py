"""The exported folder's own bookkeeping: `export.json` (what is there, checksums, the run identity)
and `crossalign-run/` (the run's config, encoder specs and weights), so `import_export` can give the
exact run back: same weights file, same identity, same vectors.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from crossalign.index.identity import file_sha256, run_identity
from crossalign.saved import WEIGHTS_ORDER, atomic_folder, atomic_write_json, weights_file, write_contract

__all__ = ["RUN_SUBDIR", "write_run_copy", "update_manifest", "import_export", "weights_file"]

RUN_SUBDIR = "crossalign-run"
EXPORT_VERSION = 1
EXPORT_KIND = "export"
_RUN_FILES = ("config.json", "encoders.json", "model.safetensors", "metrics.json", "benchmark.json")


def write_run_copy(run: Path, out: Path, which: str = "best") -> dict[str, Any]:
    """Copy what defines the run into `out/crossalign-run/`; returns {file: sha256} and the identity."""
    dest = out / RUN_SUBDIR
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights_file(run, which), dest / "model.safetensors")
    for name in _RUN_FILES[:2] + _RUN_FILES[3:]:
        if (run / name).exists():
            shutil.copyfile(run / name, dest / name)
    files = {f"{RUN_SUBDIR}/{p.name}": file_sha256(p) for p in sorted(dest.iterdir()) if p.is_file()}
    return {"files": files, "identity": run_identity(dest).to_dict() | {"path": ""}}


def update_manifest(out: Path, run: Path, fmt: str, entry: Any, run_copy: dict[str, Any]) -> dict[str, Any]:
    """Add one format's entry to `out/export.json` (formats exported into one folder accumulate)."""
    path = out / "export.json"
    meta: dict[str, Any] = {}
    if path.exists():
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError:
            meta = {}
    if not isinstance(meta, dict) or meta.get("run_id") not in (None, run_copy["identity"]["run_id"]):
        meta = {}  # a different run was exported here before: start over rather than mix the two
    meta.update({"kind": "crossalign-export", "version": EXPORT_VERSION, "run_id": run_copy["identity"]["run_id"],
                 "source_run": str(run), "identity": run_copy["identity"], "run_files": run_copy["files"],
                 "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    meta.setdefault("formats", [])
    if fmt not in meta["formats"]:
        meta["formats"].append(fmt)
    meta[fmt.replace("-", "_")] = entry
    atomic_write_json(path, meta)
    write_contract(out, EXPORT_KIND, EXPORT_VERSION, ["export.json", RUN_SUBDIR], formats=meta["formats"])
    return meta


def import_export(folder: str | Path, out: str | Path) -> Path:
    """An exported folder -> a crossalign run folder `out` (checksums verified), loadable by `load_run`."""
    from crossalign.align.io import RUN_FORMAT, RUN_KIND, load_run
    from crossalign.export.runtime import read_export_manifest

    folder, out = Path(folder), Path(out)
    manifest = folder / "export.json"
    meta = read_export_manifest(folder)  # clear errors: missing, too large, not JSON, not an export
    files = meta.get("run_files")
    if not isinstance(files, dict) or f"{RUN_SUBDIR}/model.safetensors" not in files:
        raise ValueError(f"{manifest}: field 'run_files' does not list {RUN_SUBDIR}/model.safetensors")
    src = folder / RUN_SUBDIR
    for rel in files:  # only plain names inside crossalign-run/: never a path the manifest names
        if str(rel) != f"{RUN_SUBDIR}/{Path(str(rel)).name}" or Path(str(rel)).name not in _RUN_FILES:
            raise ValueError(f"{manifest}: run_files entry '{rel}' is not a {RUN_SUBDIR}/ run file")
    staged = []
    for rel, digest in files.items():
        name = Path(str(rel)).name
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src / name}: listed in export.json but missing")
        if file_sha256(src / name) != digest:
            raise ValueError(f"{src / name}: checksum does not match export.json (file changed or corrupt)")
        staged.append(name)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: already exists and is not empty; import into a new folder")
    # Written whole: a failed check leaves no half-imported run behind.
    with atomic_folder(out, replace=out.exists()) as tmp:
        for name in staged:
            shutil.copyfile(src / name, tmp / name)
        write_contract(tmp, RUN_KIND, RUN_FORMAT, ["config.json", "encoders.json"], weights=list(WEIGHTS_ORDER))
        load_run(tmp)  # fails loudly here, not at first use, if anything is inconsistent
        got = run_identity(tmp).run_id
        if got != meta.get("run_id"):
            raise ValueError(f"{out}: imported run id {got} differs from export.json's {meta.get('run_id')}")
    return out
