"""`crossalign explain`: why two items match, unit by unit (words, image cells, audio windows, sensor cells)."""

from __future__ import annotations

import json
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from crossalign.cli.inputs import InputOpt, gather_inputs

__all__ = ["explain_cmd", "register", "print_or_dump"]


def print_or_dump(ex: Any, as_json: bool, png: Optional[Path], extra: dict[str, Any] | None = None) -> None:
    """Shared by `explain` and `search --explain`: JSON, coloured terminal text, and the PNG overlay."""
    from crossalign.explain.render import plot_explanation, print_explanation

    if png is not None:
        plot_explanation(ex, png)
    if as_json:
        json.dump(
            (extra or {}) | ex.to_dict() | ({"png": str(png)} if png else {}),
            sys.stdout,
            ensure_ascii=False,
            indent=2,
        )
        sys.stdout.write("\n")
        return
    print_explanation(ex)
    if png is not None:
        typer.echo(f"overlay -> {png}")


def explain_cmd(
    run: Annotated[Path, typer.Argument(help="trained run folder")],
    text: Annotated[Optional[str], typer.Option(help="text item")] = None,
    image: Annotated[Optional[Path], typer.Option(help="image file")] = None,
    audio: Annotated[Optional[Path], typer.Option(help="audio file")] = None,
    sensor: Annotated[Optional[Path], typer.Option(help="sensor array file (.npy/.npz/.csv)")] = None,
    input: InputOpt = None,
    id: Annotated[
        Optional[str], typer.Option("--id", help="manifest row (its id or 1-based number); with --data")
    ] = None,
    data: Annotated[Optional[Path], typer.Option(help="manifest (or its folder) holding --id")] = None,
    views: Annotated[
        Optional[str], typer.Option(help="the two view columns of --id (default: text,image)")
    ] = None,
    method: Annotated[str, typer.Option(help="auto (the right one per tower) | ig | occlusion")] = "auto",
    grid: Annotated[
        Optional[int], typer.Option(help="image cells per side (default: the encoder's grid, else 4)")
    ] = None,
    window: Annotated[float, typer.Option(help="audio window in seconds")] = 0.25,
    steps: Annotated[
        int, typer.Option(help="integrated-gradients steps (raised until completeness holds)")
    ] = 64,
    png: Annotated[Optional[Path], typer.Option(help="write the overlay picture here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Similarity of two items (any two of --text/--image/--audio/--sensor/--input M=V, or --id ROW --data M) and its
    attribution to the units of each side; says which method ran on each tower and why."""
    from crossalign.align.embedder import Embedder
    from crossalign.explain import explain_pair
    from crossalign.explain.rows import row_items

    given = gather_inputs({"text": text, "image": image, "audio": audio, "sensor": sensor}, input)
    if id is not None and (data is None or given):
        raise typer.BadParameter("--id needs --data and no --text/--image/--audio/--sensor/--input")
    if id is None and len(given) != 2:
        raise typer.BadParameter("give two of --text/--image/--audio/--sensor/--input M=V (or --id ROW --data M)")
    if steps < 2 or steps > 4096:
        raise typer.BadParameter("--steps must be in 2..4096")
    try:
        with redirect_stdout(sys.stderr):  # packaged models print while loading; keep stdout for --json
            emb = Embedder.from_run(run)
            if id is not None:
                row, items = row_items(
                    emb, data, id, [v.strip() for v in views.split(",")] if views else None
                )
                extra: dict[str, Any] = {"row": str(row.get("id", id)), "views": [c for c, _ in items]}
            else:
                items = [
                    (emb.column_for(m), emb.read(m, [v], Path.cwd())[0])
                    for m, v in given.items()
                ]
                extra = {"views": [c for c, _ in items]}
            ex = explain_pair(emb, items[0], items[1], method=method, grid=grid, window_s=window, steps=steps)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    print_or_dump(ex, as_json, png, extra)


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_cmd)


def explain_top_hit(s, col: str, qmod: str, value: object, hits: list):  # type: ignore[no-untyped-def]
    """Explain the query against the top hit (read back from the source the index recorded)."""
    from crossalign.explain import explain_pair

    top = hits[0]
    if top.source is None:
        raise ValueError(f"hit {top.id} records no source to explain")
    q = s.embedder.read(col, [value], Path.cwd())[0]  # value: text, or a Path (cli.inputs)
    # Index sources are manifest-relative; the index was built from the run's data unless told otherwise.
    data = Path(s.embedder.cfg.train.data or ".")
    base = data if data.is_dir() else data.parent
    h = s.embedder.read(top.column, [top.source], base)[0]
    return explain_pair(s.embedder, (col, q), (top.column, h))
