"""`crossalign report RUN [RUN_B ...]`: one self-contained HTML file (+ JSON and CSV of the same numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["report_cmd", "register"]


def report_cmd(
    runs: Annotated[
        list[Path], typer.Argument(help="one or more run folders (several: compared side by side)")
    ],
    out: Annotated[Path, typer.Option(help="HTML file to write (OUT.json and OUT.csv go beside it)")] = Path(
        "report.html"
    ),
    data: Annotated[Optional[Path], typer.Option(help="manifest (default: each run's training data)")] = None,
    failures: Annotated[int, typer.Option(help="worst failures listed per direction")] = 3,
    explain: Annotated[
        Optional[int], typer.Option(help="explain the worst failure of the first N directions (default: all)")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for the 95 % intervals")] = 1000,
) -> None:
    """Run card, results per direction beside every baseline with bootstrap intervals, zero-shot and
    hard-negative tables, modality gap, pictures, worst failures with explanations; works offline."""
    from crossalign.report import build_report

    if failures < 0 or bootstrap < 10 or (explain is not None and explain < 0):
        raise typer.BadParameter("--failures >= 0, --explain >= 0, --bootstrap >= 10")
    for r in runs:
        if not (r / "config.json").exists():
            typer.echo(f"error: {r}: not a crossalign run folder (no config.json)", err=True)
            raise typer.Exit(2)
    try:
        files = build_report(
            runs, out, data, failures, explain, bootstrap, say=lambda s: typer.echo(s, err=True)
        )
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"report -> {files.html} ({files.html.stat().st_size / 1e6:.1f} MB); numbers -> {files.json}, {files.csv}"
    )


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
