"""`crossalign encode-shards` (streamed, distributed extraction of sharded manifests) and
`crossalign export-merged` (LoRA adapters folded into the towers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def encode_shards(source: Annotated[str, typer.Argument(help="folder, glob or file of .jsonl/.parquet/.tar shards")],
                  column: Annotated[str, typer.Option(help="column to encode (tar: image, text, audio, sensor)")],
                  out: Annotated[Path, typer.Option(help="feature store folder (part-*.npy + part-*.ids)")],
                  encoder: Annotated[str | None, typer.Option(help="encoder name (default: the modality's)")] = None,
                  chunk: Annotated[int, typer.Option(help="rows held in memory at a time")] = 1024,
                  nproc: Annotated[int, typer.Option(help="worker processes (torchrun on this machine)")] = 1) -> None:
    """Stream a sharded manifest through an encoder into a feature store; memory stays flat."""
    from crossalign.data.features import ViewSpec
    from crossalign.train.distributed import encode_sharded, init_from_env, is_launched, shutdown

    if nproc > 1 and not is_launched():
        from crossalign.train.launch import relaunch_self

        raise typer.Exit(relaunch_self(nproc))
    ctx = init_from_env()
    n = encode_sharded(source, ViewSpec(column, encoder), out, ctx, chunk=chunk, progress=ctx.rank == 0)
    typer.echo(f"rank {ctx.rank}: {n} rows of '{column}' -> {out}")
    shutdown()


def export_merged_cmd(run: Annotated[Path, typer.Argument(help="run folder with LoRA towers")],
                      out: Annotated[Path, typer.Option(help="folder for the merged run")]) -> None:
    """Fold LoRA adapters into the tower weights: a plain run any crossalign loader reads."""
    from crossalign.align.io import export_merged

    typer.echo(f"merged run: {export_merged(run, out).parent}")


def register(app: typer.Typer) -> None:
    app.command("encode-shards")(encode_shards)
    app.command("export-merged")(export_merged_cmd)
