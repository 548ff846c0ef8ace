"""`crossalign train` and `crossalign tune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from crossalign.cli.common import config_from_args
from crossalign.cli.semi import PairedFractionOpt, SemiOpt, UnpairedOpt

ConfigArg = Annotated[Optional[Path], typer.Argument(help="YAML config (model: ..., train: ...)")]
DataOpt = Annotated[Optional[Path], typer.Option(help="manifest or its folder (overrides the config)")]
ModOpt = Annotated[Optional[str], typer.Option(help="comma-separated view columns, e.g. image,text,audio,sensor")]
OutOpt = Annotated[Optional[Path], typer.Option(help="run folder")]


def train_cmd(config: ConfigArg = None, data: DataOpt = None, modalities: ModOpt = None, out: OutOpt = None,
              epochs: Annotated[Optional[int], typer.Option(help="epochs")] = None,
              objective: Annotated[Optional[str], typer.Option(help="infonce|siglip|tri-sigmoid|tri-sigmoid-neg|cosine")] = None,
              seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
              fresh: Annotated[bool, typer.Option("--fresh", help="ignore an existing checkpoint in OUT")] = False,
              evaluate: Annotated[bool, typer.Option(help="evaluate the best model on the test split")] = True,
              nproc: Annotated[int, typer.Option(help="worker processes on this machine (runs torchrun)")] = 1,
              max_restarts: Annotated[int, typer.Option(help="with --nproc: torchrun restarts after a failure")] = 0,
              paired_fraction: PairedFractionOpt = None, semi: SemiOpt = None, unpaired: UnpairedOpt = None) -> None:
    """Train an alignment model; resumes from OUT/last_state.pt if present."""
    from crossalign.evaluate.report import print_tables, retrieval_table, view_table
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.train.api import train
    from crossalign.train.distributed import init_from_env, is_launched

    cfg = config_from_args(config, data, modalities, out, epochs, objective, seed)
    from crossalign.cli import semi as _semi

    if _semi.semi_requested(paired_fraction, semi, unpaired):  # unpaired items take part (semi/)
        return _semi.train_semi_cmd(cfg, _semi.semi_config(paired_fraction, semi, unpaired), fresh, evaluate)
    if nproc > 1 and not is_launched():
        from crossalign.train.launch import relaunch_self

        # --fresh applies once, here: restarted workers must resume from the last checkpoint.
        raise typer.Exit(relaunch_self(nproc, max_restarts=max_restarts, fresh_out=Path(cfg.train.out) if fresh else None))
    run, res = train(cfg, resume=not fresh)
    if init_from_env().rank != 0:
        return
    typer.echo(f"run: {run}  best val {cfg.train.primary} = {res.best_metric:.4f} at epoch {res.best_epoch}")
    if evaluate:
        m = evaluate_run(run, split="test").metrics
        print_tables(retrieval_table(m, cfg.model.columns, title="test R@1"), view_table(m, cfg.model.columns))


def tune_cmd(config: ConfigArg = None, data: DataOpt = None, modalities: ModOpt = None,
             out: Annotated[Path, typer.Option(help="folder for trials, best.yaml and tune.json")] = Path("runs/tune"),
             trials: Annotated[int, typer.Option(help="number of trials")] = 10,
             epochs: Annotated[Optional[int], typer.Option(help="epochs per trial")] = None) -> None:
    """Hyperparameter search with Optuna on the validation split; writes OUT/best.yaml."""
    from crossalign.train.tune import tune

    cfg = config_from_args(config, data, modalities, None)
    s = tune(cfg, trials=trials, out=out, epochs=epochs)
    typer.echo(f"best val {cfg.train.primary} = {s['best_value']:.4f} with {s['best_params']}; config: {out / 'best.yaml'}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("tune")(tune_cmd)
