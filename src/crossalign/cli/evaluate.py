"""`crossalign eval` and `crossalign benchmark`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from crossalign.cli.common import EncoderOpt, config_from_args
from crossalign.cli.semi import PairedFractionOpt, SemiOpt, UnpairedOpt
from crossalign.cli.train import PromptMapOpt, PromptOpt


def eval_cmd(run: Annotated[Path, typer.Argument(help="run folder")],
             data: Annotated[Optional[Path], typer.Option(help="manifest (default: the run's training data)")] = None,
             split: Annotated[str, typer.Option(help="split to evaluate")] = "test",
             out: Annotated[Optional[Path], typer.Option(help="where metrics.json goes (default: RUN)")] = None,
             encoder: EncoderOpt = None, prompt: PromptOpt = None, prompt_map: PromptMapOpt = None,
             evaluators: Annotated[Optional[str], typer.Option(
                 help="comma-separated evaluators (default: retrieval,diagnostics,zeroshot,hardneg,probe; "
                      "plug-ins add more)")] = None) -> None:
    """Retrieval in every direction, zero-shot, hard negatives, diagnostics, linear probes."""
    from crossalign.align.io import load_run
    from crossalign.evaluate.plots import plot_run
    from crossalign.evaluate.report import print_tables, retrieval_table, view_table
    from crossalign.evaluate.run_eval import evaluate_run

    from crossalign.cli.encode import parse_views
    from crossalign.evaluate.plugins import parse_evaluators
    from crossalign.evaluate.prompts import load_prompts

    try:
        res = evaluate_run(run, data, split, out, progress=True, prompts=load_prompts(prompt, prompt_map),
                           encoders=parse_views(encoder or []), evaluators=parse_evaluators(evaluators))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    if res.prompts:
        typer.echo(f"zero-shot prompts ({res.prompts['how']}), e.g. {list(res.prompts['prompts'].values())[:3]}")
    cols = list(res.embeddings)
    m = res.metrics
    plot_run(out or run, res.embeddings, res.table, load_run(run)[0].specs)
    print_tables(retrieval_table(m, cols, "R@1", f"{split} R@1 (row: query, column: target)"),
                 retrieval_table(m, cols, "R@10", f"{split} R@10"), view_table(m, cols))
    typer.echo(f"mean R@1 {m.get('mean/R@1', float('nan')):.4f}  mean MRR {m.get('mean/MRR', float('nan')):.4f}"
               f"  -> {(out or run) / 'metrics.json'}")


def benchmark_cmd(config: Annotated[Optional[Path], typer.Argument(help="YAML config")] = None,
                  data: Annotated[Optional[Path], typer.Option(help="manifest or folder")] = None,
                  modalities: Annotated[Optional[str], typer.Option(help="view columns")] = None,
                  out: Annotated[Path, typer.Option(help="output folder (benchmark.json)")] = Path("runs/benchmark"),
                  epochs: Annotated[Optional[int], typer.Option(help="epochs")] = None,
                  seed: Annotated[Optional[int], typer.Option(help="first random seed")] = None,
                  seeds: Annotated[int, typer.Option(min=1, help="train this many seeds; report mean ± sd")] = 1,
                  methods: Annotated[Optional[str], typer.Option(
                      help="comma-separated baselines (default: cca,kcca,ridge,procrustes,encoder,random)")] = None,
                  encoder: EncoderOpt = None,
                  paired_fraction: PairedFractionOpt = None, semi: SemiOpt = None, unpaired: UnpairedOpt = None) -> None:
    """Train crossalign and fit baselines (CCA, kernel CCA, ridge, Procrustes, the encoders' own space,
    random), each tuned on the validation split, on the same features and splits; one table."""
    import json

    from crossalign.recipes.benchmark import benchmark, directions
    from crossalign.evaluate.report import methods_table, print_tables, routes_table, winner_line

    cfg = config_from_args(config, data, modalities, None, epochs, seed=seed, encoders=encoder)
    from crossalign.cli import semi as _semi

    if _semi.semi_requested(paired_fraction, semi, unpaired):  # baselines fitted on the same pairs only
        return _semi.benchmark_semi_cmd(cfg, _semi.semi_config(paired_fraction, semi, unpaired), out)
    results = benchmark(cfg, out, seeds=seeds, methods=[m.strip() for m in methods.split(",")] if methods else None)
    wins = json.loads((out / "train_results.json").read_text())
    caption = "; ".join(f"seed {s}: {winner_line(r)}" for s, r in wins.items())
    for s, r in wins.items():  # which candidate serves each pair (train.route), per seed
        if (rt := routes_table(r, f"seed {s}: per-pair routing on validation")) is not None and r.get("routed"):
            print_tables(rt)
    print_tables(methods_table(results, directions(cfg.model.columns), caption=caption))
    typer.echo(f"wrote {out / 'benchmark.json'} (choices: {out / 'baselines.json'})")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("benchmark")(benchmark_cmd)
