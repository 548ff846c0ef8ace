"""Leave crossalign with a trained run: sentence-transformers folders, ONNX files, a model card.

`export_run(run, fmt, out)` dispatches through `EXPORTERS` (name -> function). Every format also
writes `export.json` and a `crossalign-run/` copy, so `import_export` round-trips the run exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

__all__ = ["EXPORTERS", "export_run", "import_export"]

log = logging.getLogger(__name__)


def _onnx(run: Path, out: Path, columns: list[str] | None, which: str, opts: dict[str, Any]) -> Any:
    from crossalign.export.onnx import export_onnx
    from crossalign.export.views import load_for_export

    model, _ = load_for_export(run, which)
    return export_onnx(model, out, columns, towers=opts.get("towers", True), progress=opts.get("progress"))


def _st(run: Path, out: Path, columns: list[str] | None, which: str, opts: dict[str, Any]) -> Any:
    from crossalign.export.st import export_sentence_transformers, st_supported
    from crossalign.export.views import load_for_export

    model, _ = load_for_export(run, which)
    text = [c for c in model.columns if model.specs[c].modality == "text"]
    cols = columns or [c for c in text if st_supported(model, c) is None][:1]
    if not cols:
        reasons = "; ".join(st_supported(model, c) or "" for c in (text or model.columns))
        raise ValueError(f"{run}: no view can be a sentence-transformers model ({reasons or 'no text view'})")
    if len(cols) > 1:
        raise ValueError("a sentence-transformers folder holds one view: pass one --views column")
    card = {"license": opts.get("license", "apache-2.0"), "model_name": f"crossalign {run.resolve().name} ({cols[0]})"}
    export_sentence_transformers(model, cols[0], out, card)
    return {"column": cols[0], "dim": model.out_dim, "note": "SentenceTransformer(DIR).encode(texts) equals "
            "crossalign's Embedder(run).embed(column, texts)"}


def _card(run: Path, out: Path, columns: list[str] | None, which: str, opts: dict[str, Any]) -> Any:
    from crossalign.align.io import load_run
    from crossalign.export.card import write_card

    _, cfg = load_run(run, which)
    path = write_card(run, out, cfg, license=opts.get("license", "apache-2.0"), dataset=opts.get("dataset"),
                      metrics_file=opts.get("metrics_file"), benchmark_file=opts.get("benchmark_file"))
    return {"file": path.name}


EXPORTERS: dict[str, Callable[[Path, Path, list[str] | None, str, dict[str, Any]], Any]] = {
    "sentence-transformers": _st,
    "onnx": _onnx,
    "card": _card,
}


def export_run(run: str | Path, fmt: str, out: str | Path, columns: list[str] | None = None, which: str = "best",
               **opts: Any) -> dict[str, Any]:
    """Export a run folder in one format into `out`; returns the updated `export.json` content."""
    from crossalign.export.bundle import update_manifest, write_run_copy

    run, out = Path(run), Path(out)
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format '{fmt}'; known: {', '.join(EXPORTERS)}")
    if not (run / "config.json").exists():
        raise FileNotFoundError(f"{run}: not a crossalign run (no config.json)")
    out.mkdir(parents=True, exist_ok=True)
    entry = EXPORTERS[fmt](run, out, columns, which, opts)
    meta = update_manifest(out, run, fmt, entry, write_run_copy(run, out, which))
    log.info("exported %s as %s into %s", run, fmt, out)
    return meta


def import_export(folder: str | Path, out: str | Path) -> Path:
    from crossalign.export.bundle import import_export as _imp

    return _imp(folder, out)
