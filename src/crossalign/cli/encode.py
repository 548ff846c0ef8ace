"""`crossalign encode`: extract features of manifest columns into the cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def parse_views(specs: list[str]) -> list["ViewSpec"]:  # type: ignore[name-defined]  # noqa: F821
    """`column`, `column=encoder` or `column=encoder:{json options}`."""
    from crossalign.data.features import ViewSpec

    views = []
    for s in specs:
        col, _, rest = s.partition("=")
        enc, opts = (rest or None), {}
        if enc and "{" in enc:
            enc, _, js = enc.partition("{")
            enc = enc.rstrip(":") or None
            try:
                opts = json.loads("{" + js)
            except json.JSONDecodeError as e:
                raise typer.BadParameter(f"bad options for column '{col}': {e}") from e
        views.append(ViewSpec(col.strip(), enc, opts))
    return views


def encode(data: Annotated[Path, typer.Option(help="manifest or its folder")],
           encoder: Annotated[list[str], typer.Option(
               help="COLUMN[=ENCODER[:{json options}]], repeatable; e.g. image=image:efficientnet-lite0:{\"grid\":3}")],
           batch_size: Annotated[int, typer.Option(help="items per encoder call")] = 32,
           split: Annotated[Optional[str], typer.Option(help="only rows of this split")] = None,
           cache_dir: Annotated[Optional[Path], typer.Option(help="feature cache (default $CROSSALIGN_CACHE)")] = None,
           nproc: Annotated[int, typer.Option(help="worker processes (torchrun on this machine)")] = 1) -> None:
    """Extract features into the content-keyed cache; a second run re-uses them, bad rows are listed."""
    from crossalign.cli.common import apply_cli_defaults
    from crossalign.data.encoder_choice import record_encoded, recorded_encoders, resolve_views
    from crossalign.data.extract import encode_column
    from crossalign.data.features import build_view_encoder, view_encoder, view_modality
    from crossalign.data.manifest import load_manifest

    from crossalign.train.distributed import encode_views_share, init_from_env, is_launched

    if nproc > 1 and not is_launched():
        from crossalign.train.launch import relaunch_self

        raise typer.Exit(relaunch_self(nproc))
    ctx = init_from_env()
    m = load_manifest(data).select(split)
    views = parse_views(encoder)
    apply_cli_defaults(views, recorded_encoders(m))  # the same bare-column options `train` uses
    for v in views:
        if v.column not in m.columns:
            raise typer.BadParameter(f"column '{v.column}' not in {m.path} (columns: {', '.join(m.columns)})")
    resolve_views(views, m)  # chosen together, as `train` chooses them (text in two languages shares one)
    if ctx.world_size > 1:  # every rank encodes its rows into the cache; rank 0 then reports the whole
        encode_views_share(m, views, ctx, batch_size=batch_size, cache_dir=cache_dir, progress=ctx.rank == 0)
        if ctx.rank != 0:
            return
    for v in views:
        enc = build_view_encoder(v, m)  # an unset encoder is chosen from the column's name and content
        record_encoded(m, v.column, view_encoder(v), v.options)  # `train` then uses the same one
        cf = encode_column(m, v.column, enc, batch_size=batch_size, progress=True, cache_dir=cache_dir,
                           modality=view_modality(v))
        shape = "x".join(str(s) for s in cf.spec.output_shape)
        typer.echo(f"{v.column}: {enc.spec.name} ({v.why}) -> {len(cf.rows)} rows of {shape} "
                   f"({cf.encoded} newly encoded, the rest from the cache) [{cf.spec.cache_key()}]")
        for p in cf.problems[:50]:
            typer.echo(f"  skipped {p}")
        if len(cf.problems) > 50:
            typer.echo(f"  ... and {len(cf.problems) - 50} more skipped rows")
