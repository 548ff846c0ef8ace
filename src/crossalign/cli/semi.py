"""`crossalign align-unpaired`, plus the `--paired-fraction / --semi / --unpaired` path of
`train` and `benchmark` (those commands call `semi_requested` and hand over here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crossalign.cli.common import CLI_VIEW_OPTIONS, EncoderOpt, apply_encoder_args

__all__ = ["benchmark_semi_cmd", "register", "semi_config", "semi_requested", "train_semi_cmd"]

PairedFractionOpt = Annotated[float | None, typer.Option(
    help="keep this seeded fraction of training rows paired; the rest become unpaired items (0 < F <= 1)")]
SemiOpt = Annotated[str | None, typer.Option(
    "--semi", help="how unpaired items train: pseudo-pairs | self-training | none (default: pseudo-pairs)")]
UnpairedOpt = Annotated[list[Path] | None, typer.Option(
    help="manifest of unpaired items (any of the view columns), repeatable")]


def semi_requested(paired_fraction: float | None, semi: str | None, unpaired: list[Path] | None) -> bool:
    return paired_fraction is not None or semi is not None or bool(unpaired)


def semi_config(paired_fraction: float | None, semi: str | None, unpaired: list[Path] | None):  # type: ignore[no-untyped-def]
    from crossalign.semi.config import DEFAULT_METHOD, SemiConfig

    try:
        return SemiConfig(method=semi or DEFAULT_METHOD, paired_fraction=paired_fraction,
                          unpaired=[str(u) for u in unpaired or []])
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


def train_semi_cmd(cfg, semi, fresh: bool, evaluate: bool) -> None:  # type: ignore[no-untyped-def]
    from crossalign.evaluate.report import print_tables, retrieval_table, view_table
    from crossalign.evaluate.run_eval import evaluate_model
    from crossalign.recipes.semi import prepare_semi, train_semi

    try:
        data = prepare_semi(cfg, semi, cfg.train.progress)
        run, res = train_semi(cfg, semi, data=data, resume=not fresh)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(f"run: {run}  {len(data.table.split(cfg.train.train_split))} pairs + unpaired "
               f"{data.unpaired.counts()} ({semi.method})  best val {cfg.train.primary} = "
               f"{res.best_metric:.4f} at epoch {res.best_epoch}")
    if evaluate:
        from crossalign.align.io import load_run

        model, rcfg = load_run(run)
        m = evaluate_model(model, rcfg, data.table, "test").metrics
        (Path(run) / "metrics.json").write_text(json.dumps(m, indent=2))
        print_tables(retrieval_table(m, rcfg.model.columns, title="test R@1"), view_table(m, rcfg.model.columns))


def benchmark_semi_cmd(cfg, semi, out: Path) -> None:  # type: ignore[no-untyped-def]
    from crossalign.recipes.benchmark import directions
    from crossalign.evaluate.report import methods_table, print_tables
    from crossalign.recipes.semi import benchmark_semi

    try:
        results = benchmark_semi(cfg, semi, out)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    print_tables(methods_table(results, directions(cfg.model.columns)))
    typer.echo(f"wrote {out / 'benchmark.json'}")


def _view(col: str):  # type: ignore[no-untyped-def]
    from crossalign.data.features import ViewSpec

    return ViewSpec(col, options=dict(CLI_VIEW_OPTIONS.get(col.split("_")[0], {})))  # as `train` on the CLI


def _only_view_column(path: Path) -> str:
    from crossalign.data.manifest import load_manifest

    cols = list(load_manifest(path).modality_columns)
    if len(cols) != 1:
        raise typer.BadParameter(f"{path}: {len(cols)} view columns {cols}; name one per --data with --modalities")
    return cols[0]


def align_unpaired_cmd(
        data: Annotated[list[Path], typer.Option(help="the two collections: --data A --data B (manifests)")],
        modalities: Annotated[str | None, typer.Option(help="view column of A and of B, e.g. text,audio")] = None,
        seeds: Annotated[Path | None, typer.Option(help="known pairs: CSV/JSONL with ids in fields a, b")] = None,
        out: Annotated[Path, typer.Option(help="output folder (map, matches, report)")] = Path("runs/unpaired"),
        method: Annotated[str, typer.Option(help="GW solver: auto | exact | entropic")] = "auto",
        init: Annotated[str, typer.Option(
            help="auto | shared (no GW: the encoder space both columns share) | signature (GW from the items' "
                 "distance quantiles) | product (GW from the independent coupling); auto: shared when both "
                 "columns go through one encoder, else signature")] = "auto",
        encoder: EncoderOpt = None,
        max_items: Annotated[int, typer.Option(help="items per side that GW sees (seeded subsample beyond)")] = 3000,
        dim: Annotated[int | None, typer.Option(
            help="PCA dimensions of the linear map (default 64 after GW, every dimension in a shared space)")] = None,
        linear_map: Annotated[str, typer.Option("--map", help="procrustes | ridge")] = "procrustes",
        refine: Annotated[int, typer.Option(help="rounds of re-matching + refitting the map")] = 0,
        ids_match: Annotated[bool, typer.Option(help="ids shared by A and B are true pairs: report how many are recovered")] = False,
        seed: Annotated[int, typer.Option(help="random seed (subsampling)")] = 0) -> None:
    """Match two collections with no (or a few seed) pairs: Gromov-Wasserstein, then a linear map."""
    import numpy as np

    from crossalign.semi.data import collection_features, read_seed_pairs
    from crossalign.semi.unpaired import align_unpaired, init_for

    if len(data) != 2:
        raise typer.BadParameter("give exactly two collections: --data A --data B")
    cols = [c.strip() for c in modalities.split(",")] if modalities else [_only_view_column(p) for p in data]
    if len(cols) != 2:
        raise typer.BadParameter("--modalities names one view column per collection, e.g. text,audio")
    views = apply_encoder_args([_view(c) for c in cols], encoder, add_missing=False)
    try:
        _choose_encoders(data, views, init)
        (ids_a, xa, pa), (ids_b, xb, pb) = (collection_features(p, v, progress=True) for p, v in zip(data, views))
        if init == "auto":
            va, vb = views
            init = init_for(va.encoder, vb.encoder, va.options, vb.options, xa.shape[1:], xb.shape[1:])
            typer.echo(f"start: {init}" + (" (both collections are in one encoder space)" if init == "shared" else ""))
        pairs = read_seed_pairs(seeds, ids_a, ids_b) if seeds else None
        truth = None
        if ids_match:
            pos = {x: i for i, x in enumerate(ids_b)}
            truth = np.array([pos.get(x, -1) for x in ids_a], np.int64)
        res = align_unpaired(xa, xb, seeds=pairs, method=method, max_items=max_items, dim=dim, kind=linear_map,
                             refine=refine, seed=seed, truth=truth, init=init)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    out.mkdir(parents=True, exist_ok=True)
    res.map.save(out)
    with open(out / "matches.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"a": ids_a[i], "b": ids_b[int(j)], "score": round(float(s), 4)}) + "\n"
                     for i, (j, s) in enumerate(zip(res.match, res.score, strict=True)))
    report = {**res.report, "data": [str(p) for p in data], "columns": cols, "skipped_a": len(pa), "skipped_b": len(pb)}
    (out / "unpaired.json").write_text(json.dumps(report, indent=2))
    how = "matched in their shared encoder space" if init == "shared" else f"GW {res.report['method']}"
    typer.echo(f"{len(xa)} x {len(xb)} items, {how} on {res.report['gw_items_a']} x {res.report['gw_items_b']} "
               f"in {res.report['gw_seconds']} s, {len(pairs) if pairs is not None else 0} seeds")
    if truth is not None:
        typer.echo(f"true pairs recovered: {'shared-space' if init == 'shared' else 'GW'} matching "
                   f"{res.report['gw_recovered']:.3f}, after the map {res.report['map_recovered']:.3f}")
    typer.echo(f"wrote {out / 'matches.jsonl'}, {out / 'map.safetensors'}, {out / 'unpaired.json'}")


def _choose_encoders(data: list[Path], views: list, init: str) -> None:  # type: ignore[type-arg]
    """Each collection's encoder, chosen together (text in two languages shares the multilingual
    one, as in `train`), and printed."""
    from crossalign.data.encoder_choice import resolve_view, share_multilingual
    from crossalign.data.manifest import load_manifest
    from crossalign.semi.unpaired import INITS

    if init != "auto" and init not in INITS:
        raise ValueError(f"--init must be auto or one of {', '.join(INITS)}, not {init!r}")
    ms = [load_manifest(p) for p in data]
    for v, m in zip(views, ms, strict=True):
        if v.column not in m.columns:
            raise ValueError(f"{m.path}: no column '{v.column}' (columns are {m.columns})")
        resolve_view(v, m)
    share_multilingual(views, ms)
    for v, p in zip(views, data, strict=True):
        typer.echo(f"{p}: {v.column}: {v.encoder} ({v.why})")


def register(app: typer.Typer) -> None:
    app.command("align-unpaired")(align_unpaired_cmd)
