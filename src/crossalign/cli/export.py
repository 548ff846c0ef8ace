"""`crossalign export` (sentence-transformers, ONNX, model card) and `crossalign import`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

FORMATS = ("sentence-transformers", "onnx", "card")


def export_cmd(run: Annotated[Path, typer.Argument(help="run folder")],
               format: Annotated[str, typer.Option("--format", "-f", help="|".join(FORMATS))],
               out: Annotated[Path, typer.Option(help="output folder")],
               views: Annotated[Optional[str], typer.Option(help="comma-separated view columns (default: all that fit)")] = None,
               which: Annotated[str, typer.Option(help="weights: best|last|model")] = "best",
               head_only: Annotated[bool, typer.Option("--head-only", help="onnx: heads on features for every frozen view")] = False,
               license: Annotated[str, typer.Option(help="licence of the exported weights (card / model card)")] = "apache-2.0",
               dataset: Annotated[Optional[str], typer.Option(help="card: dataset name (default: the manifest's folder)")] = None,
               metrics: Annotated[Optional[Path], typer.Option(help="card: evaluation JSON (default: RUN/metrics.json)")] = None,
               benchmark: Annotated[Optional[Path], typer.Option(help="card: baselines JSON (default: RUN/benchmark.json)")] = None) -> None:
    """Write RUN as a sentence-transformers folder, ONNX files (one per view) or a model card."""
    from crossalign.export import export_run

    if format not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    cols = [c.strip() for c in views.split(",") if c.strip()] if views else None
    try:
        meta = export_run(run, format, out, cols, which, towers=not head_only, license=license, dataset=dataset,
                          metrics_file=metrics, benchmark_file=benchmark,
                          progress=lambda msg: typer.echo(msg, err=True))
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    entry = meta[format.replace("-", "_")]
    if format == "onnx":
        for v in entry:
            src = v.get("feature_extractor", {}).get("encoder", {}).get("name")
            typer.echo(f"{out / v['file']}: {v['kind']}" + (f" (features from {src})" if src else "")
                       + f", opset {v['opset']}, onnxruntime parity {v['parity_max_abs_diff']:.1e}")
    elif format == "sentence-transformers":
        typer.echo(f"{out}: SentenceTransformer for view '{entry['column']}' ({entry['dim']}-d)")
    else:
        typer.echo(f"{out / entry['file']}: model card")


def import_cmd(folder: Annotated[Path, typer.Argument(help="a folder written by `crossalign export`")],
               out: Annotated[Path, typer.Option(help="run folder to create")]) -> None:
    """Restore the crossalign run inside an exported folder (checksums verified)."""
    from crossalign.export import import_export

    try:
        run = import_export(folder, out)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"run: {run}")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("import")(import_cmd)
