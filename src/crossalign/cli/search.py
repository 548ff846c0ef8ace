"""`crossalign index build|add|delete|info`, `crossalign search` and `crossalign serve`."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from crossalign.cli.common import csv_list
from crossalign.cli.inputs import InputOpt, gather_inputs

index_app = typer.Typer(
    no_args_is_help=True, help="Build and maintain a persistent search index of a collection."
)

_KIND_HELP = "flat (exact, default) | hnsw | ivf (approximate, for large collections)"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Expected failures (bad input, missing files, incompatible run, damaged index) -> one line,
    exit 1 (a data error; usage errors are typer.BadParameter, exit 2)."""
    from crossalign.index import CorruptIndexError, IndexLockedError

    try:
        yield
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
        CorruptIndexError,
        IndexLockedError,
    ) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


def _parse_filters(filters: Optional[list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in filters or []:
        key, sep, value = f.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"filter '{f}' must look like KEY=VALUE (e.g. label=3, split=test)")
        out.setdefault(key.strip(), []).append(value)
    return out


def _report(rep, verb: str) -> None:  # type: ignore[no-untyped-def]
    cols = ", ".join(f"{c} {n}" for c, n in rep.by_column.items())
    typer.echo(f"{verb} {rep.added} items ({cols}) -> {rep.path} (generation {rep.generation})")
    for p in rep.problems[:20]:
        typer.echo(f"  skipped {p}")
    if len(rep.problems) > 20:
        typer.echo(f"  ... and {len(rep.problems) - 20} more skipped values")


@index_app.command("build")
def build_cmd(
    run: Annotated[Path, typer.Argument(help="trained run folder")],
    data: Annotated[Path, typer.Option(help="manifest (or its folder) of the collection")],
    out: Annotated[Path, typer.Option(help="index folder to write")],
    modalities: Annotated[
        Optional[str],
        typer.Option(
            help="comma-separated modalities or view columns to index (default: all views of the run)"
        ),
    ] = None,
    split: Annotated[Optional[str], typer.Option(help="only rows of this split (e.g. test)")] = None,
    kind: Annotated[str, typer.Option(help=_KIND_HELP)] = "flat",
    nlist: Annotated[int, typer.Option(help="IVF cells (0: ~sqrt(N))")] = 0,
    nprobe: Annotated[int, typer.Option(help="IVF cells searched per query")] = 16,
    hnsw_m: Annotated[int, typer.Option(help="HNSW graph degree")] = 32,
    ef_search: Annotated[int, typer.Option(help="HNSW search beam")] = 128,
    overwrite: Annotated[bool, typer.Option(help="replace an existing index (atomically)")] = False,
    batch_size: Annotated[int, typer.Option(help="items per encoder call")] = 32,
) -> None:
    """Embed a collection with a trained run into a new persistent index."""
    from crossalign.index import IndexParams, build_index

    with _user_errors():
        params = IndexParams(kind=kind, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search)
        rep = build_index(
            run, data, out, csv_list(modalities), split, params, overwrite, batch_size, progress=True
        )
    _report(rep, f"indexed ({kind})")


@index_app.command("add")
def add_cmd(
    index: Annotated[Path, typer.Argument(help="index folder")],
    data: Annotated[Path, typer.Option(help="manifest with the new rows")],
    modalities: Annotated[Optional[str], typer.Option(help="modalities or columns (default: all)")] = None,
    split: Annotated[Optional[str], typer.Option(help="only rows of this split")] = None,
    run: Annotated[
        Optional[Path], typer.Option(help="run folder (default: the one that built the index)")
    ] = None,
    on_duplicate: Annotated[
        str, typer.Option(help="an id already indexed: error | skip | replace")
    ] = "error",
    batch_size: Annotated[int, typer.Option(help="items per encoder call")] = 32,
) -> None:
    """Add manifest rows to an index without rebuilding it."""
    from crossalign.index import add_to_index

    if on_duplicate not in ("error", "skip", "replace"):
        raise typer.BadParameter("--on-duplicate must be error, skip or replace")
    with _user_errors():
        rep = add_to_index(
            index,
            data,
            csv_list(modalities),
            split,
            run,
            on_duplicate,  # type: ignore[arg-type]
            batch_size,
            progress=True,
        )
    _report(rep, "added")


@index_app.command("delete")
def delete_cmd(
    index: Annotated[Path, typer.Argument(help="index folder")],
    ids: Annotated[list[str], typer.Argument(help="item ids to delete")],
    modality: Annotated[Optional[str], typer.Option(help="only this modality of each id")] = None,
) -> None:
    """Delete items by id (all their modalities unless --modality)."""
    from crossalign.index import delete_from_index

    with _user_errors():
        n, missing = delete_from_index(index, ids, modality)
    typer.echo(f"deleted {n} items")
    if missing:
        typer.echo(f"not found: {', '.join(missing[:50])}" + (" ..." if len(missing) > 50 else ""), err=True)
        raise typer.Exit(1)


@index_app.command("info")
def info_cmd(
    index: Annotated[Path, typer.Argument(help="index folder")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """What an index holds and which run built it (verifies its files)."""
    from crossalign.index import VectorIndex

    with _user_errors():
        with VectorIndex.open(index) as ix:
            info = ix.info()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    run = info["run"] or {}
    typer.echo(
        f"{info['path']}: {info['items']} items "
        f"({', '.join(f'{m} {n}' for m, n in info['by_modality'].items())}), dim {info['dim']}, "
        f"{info['kind']}, generation {info['generation']}, {info['bytes_on_disk'] / 1e6:.1f} MB"
    )
    typer.echo(f"run {run.get('run_id')} at {run.get('path')}; updated {info['updated']}")
    for col, spec in (run.get("encoders") or {}).items():
        typer.echo(f"  {col}: {spec['name']} @ {spec['version']}")


def search_cmd(
    index: Annotated[Path, typer.Argument(help="index folder")],
    text: Annotated[Optional[str], typer.Option(help="query text")] = None,
    image: Annotated[Optional[Path], typer.Option(help="query image file")] = None,
    audio: Annotated[Optional[Path], typer.Option(help="query audio file")] = None,
    sensor: Annotated[Optional[Path], typer.Option(help="query array file (.npy/.npz/.csv)")] = None,
    input: InputOpt = None,
    k: Annotated[int, typer.Option("-k", "--k", help="results to return")] = 10,
    modality: Annotated[Optional[str], typer.Option(help="only results of this modality")] = None,
    view: Annotated[
        Optional[str],
        typer.Option(help="query view column when a run has several of one modality (e.g. text_zh)"),
    ] = None,
    filter: Annotated[
        Optional[list[str]],
        typer.Option(
            "--filter", help="KEY=VALUE metadata filter, repeatable (label=3, group=g7, split=test)"
        ),
    ] = None,
    run: Annotated[
        Optional[Path], typer.Option(help="run folder (default: the one that built the index)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="explain why the top hit matches (see `crossalign explain`)")
    ] = False,
    explain_png: Annotated[
        Optional[Path], typer.Option(help="with --explain: write the overlay picture here")
    ] = None,
) -> None:
    """Query an index with text, an image, audio, a sensor array (or `--input MODALITY=FILE`); prints
    ranked results with scores."""
    from crossalign.index import IncompatibleRunError, Searcher

    given = gather_inputs({"text": text, "image": image, "audio": audio, "sensor": sensor}, input)
    if len(given) != 1:
        raise typer.BadParameter("give exactly one query: --text, --image, --audio, --sensor or --input M=V")
    ((qmod, value),) = given.items()
    if k < 1 or k > 10_000:
        raise typer.BadParameter("-k must be between 1 and 10000")
    # Some packaged models print while loading; stdout stays clean for --json consumers.
    with _user_errors(), redirect_stdout(sys.stderr):
        try:
            s = Searcher.open(index, run)
            col = view or qmod
            if s.embedder.modalities.get(s.column_for(col)) != qmod:
                raise ValueError(f"view '{col}' is not a {qmod} view of the run")
            hits = s.search(
                col,
                value,
                k,
                modality,
                _parse_filters(filter),
                base_dir=Path.cwd(),
            )
            if explain and hits:
                from crossalign.cli.explain import explain_top_hit

                ex = explain_top_hit(s, col, qmod, value, hits)
            else:
                ex = None
        except IncompatibleRunError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(3) from None
    if as_json:
        json.dump(
            {"query": {"modality": qmod, "value": str(value)}, "results": [h.to_dict() for h in hits]}
            | ({"explanation": ex.to_dict()} if ex is not None else {}),
            sys.stdout,
            ensure_ascii=False,
            indent=2,
        )
        sys.stdout.write("\n")
        return
    if not hits:
        typer.echo("no results")
    width = max((len(h.id) for h in hits), default=2)
    for h in hits:
        src = h.source or ""
        src = src if len(src) <= 90 else src[:87] + "..."
        lab = f" label={h.label}" if h.label is not None else ""
        typer.echo(f"{h.rank:>3}  {h.score:+.4f}  {h.id:<{width}}  {h.modality:<6}{lab}  {src}")
    if ex is not None:
        from crossalign.cli.explain import print_or_dump

        typer.echo(f"why {hits[0].id} matches:")
        print_or_dump(ex, False, explain_png)


def serve_cmd(
    run: Annotated[Path, typer.Argument(help="trained run folder")],
    index: Annotated[Optional[Path], typer.Option(help="index folder for /v1/search")] = None,
    host: Annotated[str, typer.Option(help="interface to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="largest request body accepted")] = 10.0,
    max_batch: Annotated[int, typer.Option(help="most items per encoder call when batching requests")] = 32,
    batch_wait_ms: Annotated[
        float, typer.Option(help="how long a request waits for others to batch with")
    ] = 5.0,
    max_k: Annotated[int, typer.Option(help="largest k a client may ask for")] = 1000,
    bridge: Annotated[Optional[Path], typer.Option(help="LLM bridge folder for POST /v1/ask (default: RUN/bridge if present)")] = None,
    max_decodes: Annotated[int, typer.Option(help="images/audio/arrays decoded at once")] = 2,
    max_image_pixels: Annotated[Optional[int], typer.Option(help="largest image (width x height) accepted; default 40e6 or $CROSSALIGN_MAX_IMAGE_PIXELS")] = None,
    max_audio_seconds: Annotated[Optional[float], typer.Option(help="audio decoded per input (the rest is ignored); default 30 or $CROSSALIGN_MAX_AUDIO_SECONDS")] = None,
    max_sensor_values: Annotated[Optional[int], typer.Option(help="largest sensor array accepted; default 16e6 or $CROSSALIGN_MAX_SENSOR_VALUES")] = None,
) -> None:
    """HTTP service: OpenAI-compatible /v1/embeddings, /v1/search, /v1/ask, /health, docs at /docs."""
    from crossalign.modalities import set_limits
    from crossalign.serve import ServeSettings, run_server

    with _user_errors():
        set_limits(max_image_pixels=max_image_pixels, max_audio_seconds=max_audio_seconds,
                   max_sensor_values=max_sensor_values)
        settings = ServeSettings(
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            max_batch=max_batch,
            batch_wait_ms=batch_wait_ms,
            max_k=max_k,
            max_decodes=max_decodes,
        )
        run_server(run, index, host=host, port=port, settings=settings, bridge=bridge)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command("search")(search_cmd)
    app.command("serve")(serve_cmd)
