"""`crossalign train` and `crossalign tune`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from crossalign.cli.common import EncoderOpt, LogOpt, config_from_args, log_specs
from crossalign.cli.semi import PairedFractionOpt, SemiOpt, UnpairedOpt

ConfigArg = Annotated[Optional[Path], typer.Argument(help="YAML config (model: ..., train: ...)")]
DataOpt = Annotated[Optional[Path], typer.Option(help="manifest or its folder (overrides the config)")]
ModOpt = Annotated[Optional[str], typer.Option(help="comma-separated view columns, e.g. image,text,audio,sensor")]
OutOpt = Annotated[Optional[Path], typer.Option(help="run folder")]
PromptOpt = Annotated[Optional[str], typer.Option(
    help="zero-shot prompt template, e.g. 'a photo of {}' (default: derived from the training text)")]
PromptMapOpt = Annotated[Optional[Path], typer.Option(
    help="zero-shot prompts per label: JSON {label: text} or a CSV with columns label,text")]


def train_cmd(config: ConfigArg = None, data: DataOpt = None, modalities: ModOpt = None, out: OutOpt = None,
              epochs: Annotated[Optional[int], typer.Option(help="epochs")] = None,
              objective: Annotated[Optional[str], typer.Option(help="infonce|siglip|tri-sigmoid|tri-sigmoid-neg|cosine")] = None,
              seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
              fresh: Annotated[bool, typer.Option("--fresh", help="ignore an existing checkpoint in OUT")] = False,
              evaluate: Annotated[bool, typer.Option(help="evaluate the best model on the test split")] = True,
              seeds: Annotated[int, typer.Option(min=1, help="train this many seeds (OUT/seed-S each); report mean ± sd")] = 1,
              nproc: Annotated[int, typer.Option(help="worker processes on this machine (runs torchrun)")] = 1,
              max_restarts: Annotated[int, typer.Option(help="with --nproc: torchrun restarts after a failure")] = 0,
              encoder: EncoderOpt = None,
              prompt: PromptOpt = None, prompt_map: PromptMapOpt = None,
              log: LogOpt = None,
              paired_fraction: PairedFractionOpt = None, semi: SemiOpt = None, unpaired: UnpairedOpt = None) -> None:
    """Train an alignment model; resumes from OUT/last_state.pt if present."""
    import json

    from crossalign.align.io import load_run
    from crossalign.evaluate.plots import plot_run
    from crossalign.evaluate.prompts import load_prompts
    from crossalign.evaluate.report import print_tables, retrieval_table, routes_table, view_table, winner_line
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.recipes.align import train
    from crossalign.train.distributed import init_from_env, is_launched

    cfg = config_from_args(config, data, modalities, out, epochs, objective, seed, encoder,
                           announce=os.environ.get("RANK", "0") == "0")
    specs = log_specs(log)
    from crossalign.cli import semi as _semi

    if _semi.semi_requested(paired_fraction, semi, unpaired):  # unpaired items take part (semi/)
        return _semi.train_semi_cmd(cfg, _semi.semi_config(paired_fraction, semi, unpaired), fresh, evaluate)
    if nproc > 1 and not is_launched():
        from crossalign.train.launch import relaunch_self

        # --fresh applies once, here: restarted workers must resume from the last checkpoint.
        raise typer.Exit(relaunch_self(nproc, max_restarts=max_restarts, fresh_out=Path(cfg.train.out) if fresh else None))
    if seeds > 1:
        _train_seeds(cfg, seeds, fresh, evaluate)
        return
    run, res = train(cfg, resume=not fresh, log=specs)
    if init_from_env().rank != 0:
        return
    typer.echo(f"run: {run}  best val {cfg.train.primary} = {res.best_metric:.4f} at epoch {res.best_epoch}")
    won = json.loads((run / "train_result.json").read_text())
    typer.echo(winner_line(won))
    if (rt := routes_table(won)) is not None:
        print_tables(rt)
    if evaluate:
        ev = evaluate_run(run, split="test", prompts=load_prompts(prompt, prompt_map))
        plot_run(run, ev.embeddings, ev.table, load_run(run)[0].specs)
        m = ev.metrics
        print_tables(retrieval_table(m, cfg.model.columns, title="test R@1"), view_table(m, cfg.model.columns))


def _train_seeds(cfg, seeds: int, fresh: bool, evaluate: bool) -> None:  # type: ignore[no-untyped-def]
    """Seeds S, S+1, ... into OUT/seed-S ...; test metrics aggregated into OUT/seeds.json."""
    import copy
    import json

    from crossalign.evaluate.report import print_tables, retrieval_table, winner_line
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.evaluate.seeds import aggregate
    from crossalign.recipes.align import train

    root, runs = Path(cfg.train.out), []
    for i in range(seeds):
        c = copy.deepcopy(cfg)
        c.train.seed = cfg.train.seed + i
        c.train.out = str(root / f"seed-{c.train.seed}")
        run, res = train(c, resume=not fresh)
        typer.echo(f"seed {c.train.seed}: {winner_line(json.loads((run / 'train_result.json').read_text()))}")
        if evaluate:
            runs.append(evaluate_run(run, split="test").metrics)
    if runs:
        agg = aggregate(runs)
        (root / "seeds.json").write_text(json.dumps({"mean_sd": agg, "runs": runs}, indent=2))
        print_tables(retrieval_table(agg, cfg.model.columns, title=f"test R@1, mean ± sd over {seeds} seeds"))
        typer.echo(f"mean R@1 {agg['mean/R@1']:.4f} ± {agg['mean/R@1/sd']:.4f}  -> {root / 'seeds.json'}")


def tune_cmd(config: ConfigArg = None, data: DataOpt = None, modalities: ModOpt = None,
             out: Annotated[Path, typer.Option(help="folder for trials, best.yaml and tune.json")] = Path("runs/tune"),
             trials: Annotated[int, typer.Option(help="number of trials")] = 10,
             epochs: Annotated[Optional[int], typer.Option(help="epochs per trial")] = None,
             encoder: EncoderOpt = None,
             storage: Annotated[Optional[str], typer.Option(help="Optuna storage, e.g. sqlite:///runs/tune/study.db: "
                                                                 "an interrupted search resumes, workers share it")] = None,
             study: Annotated[str, typer.Option(help="study name inside --storage")] = "crossalign",
             log: LogOpt = None) -> None:
    """Hyperparameter search with Optuna on the validation split; writes OUT/best.yaml."""
    from crossalign.recipes.tune import tune

    cfg = config_from_args(config, data, modalities, None, encoders=encoder)
    s = tune(cfg, trials=trials, out=out, epochs=epochs, storage=storage, study_name=study, log=log_specs(log))
    typer.echo(f"best val {cfg.train.primary} = {s['best_value']:.4f} with {s['best_params']}; config: {out / 'best.yaml'}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("tune")(tune_cmd)
