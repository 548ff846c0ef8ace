"""Helpers shared by CLI commands: building a RunConfig from a YAML file and/or flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["config_from_args", "apply_encoder_args", "apply_cli_defaults", "EncoderOpt", "CLI_VIEW_OPTIONS", "LogOpt",
           "log_specs"]

LogOpt = Annotated[Optional[list[str]], typer.Option(
    "--log", help="experiment logger, repeatable: jsonl|tensorboard|mlflow|wandb or NAME=TARGET "
                  "(tensorboard=DIR, mlflow=URI, wandb=PROJECT); default jsonl (RUN/log.jsonl)")]


def csv_list(s: Optional[str]) -> Optional[list[str]]:
    """A comma-separated option -> its non-empty stripped items; None when the option was not given."""
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


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

# What a bare `--modalities image` / `encode --encoder image` means on the command line (both the
# same, so what `encode` cached is what `train` reads).
CLI_VIEW_OPTIONS: dict[str, dict[str, Any]] = {"image": {"grid": 3, "color": True}}

EncoderOpt = Annotated[Optional[list[str]], typer.Option(
    "--encoder", help="COLUMN[=ENCODER[:{json options}]], repeatable; overrides the config and the defaults, "
                      "e.g. text_zh=text:e5-small or image=image:efficientnet-lite0:{\"grid\":3}")]


def apply_cli_defaults(views: list[Any], recorded: dict[str, Any]) -> None:
    """Bare views (no encoder, no options, nothing cached by `encode`) get the CLI's options."""
    from crossalign.data.manifest import view_modality

    for v in views:
        if v.encoder is None and not v.options and v.column not in recorded:
            v.options = dict(CLI_VIEW_OPTIONS.get(view_modality(v), {}))


def apply_encoder_args(views: list[Any], specs: list[str] | None, add_missing: bool) -> list[Any]:
    """Override views' encoders with `--encoder` specs; with add_missing, unknown columns become views."""
    from crossalign.cli.encode import parse_views

    by_col = {v.column: v for v in views}
    for e in parse_views(specs or []):
        v = by_col.get(e.column)
        if v is None:
            if not add_missing:
                raise typer.BadParameter(f"--encoder {e.column}: not one of the views {list(by_col)}")
            views.append(e)
            by_col[e.column] = e
            continue
        if e.encoder is not None and e.encoder != v.encoder:
            v.encoder, v.options, v.why = e.encoder, dict(e.options), "given"
        else:  # same encoder or only options: options from the command line win
            v.options = {**v.options, **e.options}
            v.why = "given"
    return views


def config_from_args(config: Optional[Path], data: Optional[Path], modalities: Optional[str],
                     out: Optional[Path], epochs: Optional[int] = None, objective: Optional[str] = None,
                     seed: Optional[int] = None, encoders: Optional[list[str]] = None,
                     announce: bool = True) -> "RunConfig":  # noqa: F821
    """The run config from a YAML file and/or flags, with every view's encoder chosen (and printed)."""
    from crossalign.config import RunConfig, load_config  # lazy: keeps `crossalign --help` fast

    if config is not None:
        cfg = load_config(config)
    else:
        if data is None or (modalities is None and not encoders):
            raise typer.BadParameter("give a CONFIG file, or --data and --modalities (or --encoder per column)")
        cols = [c.strip() for c in (modalities or "").split(",") if c.strip()]
        cfg = RunConfig.from_dict({"model": {"views": [{"column": c} for c in cols]}, "train": {}})
    cfg.model.views = apply_encoder_args(cfg.model.views, encoders, add_missing=config is None and not modalities)
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
    _choose_encoders(cfg, announce, cli_defaults=config is None)
    return cfg


def _choose_encoders(cfg: "RunConfig", announce: bool, cli_defaults: bool) -> None:  # noqa: F821
    """Pick each column's encoder now, from the manifest, and say which and why."""
    from crossalign.data.encoder_choice import recorded_encoders, resolve_views
    from crossalign.data.manifest import load_manifest
    from crossalign.data.fit_check import split_warnings

    m = load_manifest(cfg.train.data)
    # What is wrong with the data file is a data error (exit 1), not a usage error (exit 2).
    if not m.rows:
        raise ValueError(f"{m.path}: the manifest has no rows: nothing to train on")
    missing = [v.column for v in cfg.model.views if v.column not in m.columns]
    if missing:
        raise ValueError(f"{m.path}: no column(s) {missing}; columns are {m.columns}")
    if cli_defaults:
        apply_cli_defaults(cfg.model.views, recorded_encoders(m))
    try:
        lines = resolve_views(cfg.model.views, m)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    if announce:
        typer.echo("encoders:")
        for line in lines:
            typer.echo(f"  {line}")
        for w in split_warnings(m, cfg.train.seed):
            typer.echo(f"warning: {w}", err=True)
