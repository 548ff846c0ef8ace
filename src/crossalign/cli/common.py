"""Helpers shared by CLI commands: building a RunConfig from a YAML file and/or flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["config_from_args", "DEFAULT_VIEW_OPTIONS", "LogOpt", "log_specs"]

LogOpt = Annotated[Optional[list[str]], typer.Option(
    "--log", help="experiment logger, repeatable: jsonl|tensorboard|mlflow|wandb or NAME=TARGET "
                  "(tensorboard=DIR, mlflow=URI, wandb=PROJECT); default jsonl (RUN/log.jsonl)")]


def log_specs(log: Optional[list[str]]) -> list[str]:
    """`--log` values checked up front (an unknown name is a usage error, not a traceback mid-run)."""
    from crossalign.train.loggers import parse_log_spec

    specs = log or ["jsonl"]
    for s in specs:
        try:
            parse_log_spec(s)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--log") from None
    return specs

# What `--modalities image,text,audio,sensor` means when no YAML says otherwise.
DEFAULT_VIEW_OPTIONS: dict[str, dict[str, Any]] = {
    "image": {"options": {"grid": 3, "color": True}},
    "sensor": {"encoder": "sensor:conv2d"},
}


def config_from_args(config: Optional[Path], data: Optional[Path], modalities: Optional[str],
                     out: Optional[Path], epochs: Optional[int] = None, objective: Optional[str] = None,
                     seed: Optional[int] = None) -> "RunConfig":  # noqa: F821
    from crossalign.config import RunConfig, load_config  # lazy: keeps `crossalign --help` fast

    if config is not None:
        cfg = load_config(config)
    else:
        if data is None or modalities is None:
            raise typer.BadParameter("give a CONFIG file, or --data and --modalities")
        views = []
        for col in [c.strip() for c in modalities.split(",") if c.strip()]:
            base = col.split("_")[0]
            views.append({"column": col, **DEFAULT_VIEW_OPTIONS.get(base, {})})
        cfg = RunConfig.from_dict({"model": {"views": views}, "train": {}})
    if data is not None:
        cfg.train.data = str(data)
    if not cfg.train.data:
        raise typer.BadParameter("no data: set train.data in the config or pass --data")
    if out is not None:
        cfg.train.out = str(out)
    if epochs is not None:
        cfg.train.epochs = epochs
    if seed is not None:
        cfg.train.seed = seed
    if objective is not None:
        cfg.model.objective = objective
        cfg.model.__post_init__()
    return cfg
