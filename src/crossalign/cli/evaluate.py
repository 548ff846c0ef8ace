"""`crossalign eval` and `crossalign benchmark`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from crossalign.cli.common import config_from_args
from crossalign.cli.semi import PairedFractionOpt, SemiOpt, UnpairedOpt


def eval_cmd(run: Annotated[Path, typer.Argument(help="run folder")],
             data: Annotated[Optional[Path], typer.Option(help="manifest (default: the run's training data)")] = None,
             split: Annotated[str, typer.Option(help="split to evaluate")] = "test",
             out: Annotated[Optional[Path], typer.Option(help="where metrics.json goes (default: RUN)")] = None) -> None:
    """Retrieval in every direction, zero-shot, hard negatives, diagnostics, linear probes."""
    from crossalign.evaluate.report import print_tables, retrieval_table, view_table
    from crossalign.evaluate.run_eval import evaluate_run

    res = evaluate_run(run, data, split, out, progress=True)
    cols = list(res.embeddings)
    m = res.metrics
    print_tables(retrieval_table(m, cols, "R@1", f"{split} R@1 (row: query, column: target)"),
                 retrieval_table(m, cols, "R@10", f"{split} R@10"), view_table(m, cols))
    typer.echo(f"mean R@1 {m.get('mean/R@1', float('nan')):.4f}  mean MRR {m.get('mean/MRR', float('nan')):.4f}"
               f"  -> {(out or run) / 'metrics.json'}")


def benchmark_cmd(config: Annotated[Optional[Path], typer.Argument(help="YAML config")] = None,
                  data: Annotated[Optional[Path], typer.Option(help="manifest or folder")] = None,
                  modalities: Annotated[Optional[str], typer.Option(help="view columns")] = None,
                  out: Annotated[Path, typer.Option(help="output folder (benchmark.json)")] = Path("runs/benchmark"),
                  epochs: Annotated[Optional[int], typer.Option(help="epochs")] = None,
                  paired_fraction: PairedFractionOpt = None, semi: SemiOpt = None, unpaired: UnpairedOpt = None) -> None:
    """Train crossalign and fit CCA / Procrustes / ridge / random / ASIF baselines on the same features; one table."""
    from crossalign.evaluate.benchmark import benchmark, directions
    from crossalign.evaluate.report import methods_table, print_tables

    cfg = config_from_args(config, data, modalities, None, epochs)
    from crossalign.cli import semi as _semi

    if _semi.semi_requested(paired_fraction, semi, unpaired):  # baselines fitted on the same pairs only
        return _semi.benchmark_semi_cmd(cfg, _semi.semi_config(paired_fraction, semi, unpaired), out)
    results = benchmark(cfg, out)
    print_tables(methods_table(results, directions(cfg.model.columns)))
    typer.echo(f"wrote {out / 'benchmark.json'}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("benchmark")(benchmark_cmd)
