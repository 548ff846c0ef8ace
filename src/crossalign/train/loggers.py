"""Experiment loggers: `--log jsonl|tensorboard|mlflow|wandb` (repeatable), a name -> factory registry.

Every training recipe builds one `RunLogger` with `build_logger(specs, out, params=config)` and
hands it to the `Trainer`, which calls `log_metrics` once per optimiser step (loss terms, learning
rate, logit scale / temperature) and once per epoch (the `metrics.jsonl` record: epoch means and
validation metrics). The recipe calls `close(out)` at the end: the training curves are drawn and
every PNG in the run folder goes to each backend as an artefact. All scalars share one step axis,
the global optimiser step; epoch records carry an `epoch` scalar.

A spec is `NAME` or `NAME=TARGET`: `tensorboard=DIR` (default OUT/tensorboard), `mlflow=URI`
(default $MLFLOW_TRACKING_URI, else sqlite:///OUT/mlflow.db), `wandb=PROJECT` (offline unless
WANDB_MODE says otherwise), `jsonl=FILE` (default OUT/log.jsonl). Backends other than jsonl are
optional extras, imported only when asked for.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

__all__ = ["RunLogger", "LOGGERS", "build_logger", "parse_log_spec", "flatten_params", "MultiLogger"]

log = logging.getLogger(__name__)


class RunLogger(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path) -> None: ...

    def close(self) -> None: ...


def flatten_params(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"model.head.hidden": 1024, ...}; lists become JSON strings."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_params(v, f"{key}."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
        else:
            out[key] = json.dumps(v, default=str)
    return out


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


class JsonlLogger:
    """One JSON object a line: {"params": ...}, {"step": s, scalars...}, {"artifact": path}."""

    def __init__(self, path: Path, fresh: bool):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w" if fresh else "a", encoding="utf-8")

    def _write(self, rec: dict[str, Any]) -> None:
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()

    def log_params(self, params: dict[str, Any]) -> None:
        self._write({"params": params})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._write({"step": step, **_finite(metrics)})

    def log_artifact(self, path: Path) -> None:
        self._write({"artifact": str(path)})

    def close(self) -> None:
        self.f.close()


class TensorBoardLogger:
    """Scalars, hyperparameters (hparams plugin + a text summary) and plots as images."""

    def __init__(self, logdir: Path, fresh: bool):
        from torch.utils.tensorboard import SummaryWriter

        self.w = SummaryWriter(str(logdir))

    def log_params(self, params: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        hp = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in params.items()}
        for s in hparams(hp, {})[:2]:  # experiment + session-start summaries, in this run's folder
            self.w.file_writer.add_summary(s)  # type: ignore[union-attr]
        self.w.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in _finite(metrics).items():
            self.w.add_scalar(k, v, step)

    def log_artifact(self, path: Path) -> None:
        if path.suffix.lower() == ".png":
            import numpy as np
            from PIL import Image

            self.w.add_image(f"plots/{path.stem}", np.asarray(Image.open(path).convert("RGB")), dataformats="HWC")

    def close(self) -> None:
        self.w.close()


_MLFLOW_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")


def mlflow_key(k: str) -> str:
    """MLflow keys allow letters, digits, `_-. /`: `text->image/R@1` becomes `text_to_image/R_at_1`."""
    return _MLFLOW_BAD.sub("_", k.replace("->", "_to_").replace("@", "_at_"))


class MlflowLogger:
    """Through `MlflowClient` (no global active run): one run in experiment `crossalign`."""

    def __init__(self, uri: str, out: Path, run_name: str):
        from mlflow.tracking import MlflowClient

        self.c = MlflowClient(tracking_uri=uri)
        exp = self.c.get_experiment_by_name("crossalign")
        if exp is None:
            # Artefacts beside a sqlite file (never ./mlruns in whatever folder the command ran from).
            root = Path(uri[len("sqlite:///"):]).parent if uri.startswith("sqlite:///") else out
            eid = self.c.create_experiment("crossalign", artifact_location=(root / "mlflow-artifacts").resolve().as_uri())
        else:
            eid = exp.experiment_id
        self.run_id = self.c.create_run(eid, run_name=run_name).info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        ps = [Param(mlflow_key(k), str(v)[:6000]) for k, v in params.items()]
        for s in range(0, len(ps), 100):  # log_batch takes at most 100 params a call
            self.c.log_batch(self.run_id, params=ps[s:s + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        ms = [Metric(mlflow_key(k), v, now, step) for k, v in _finite(metrics).items()]
        for s in range(0, len(ms), 1000):
            self.c.log_batch(self.run_id, metrics=ms[s:s + 1000])

    def log_artifact(self, path: Path) -> None:
        self.c.log_artifact(self.run_id, str(path), "plots" if path.suffix.lower() == ".png" else None)

    def close(self) -> None:
        self.c.set_terminated(self.run_id)


class WandbLogger:
    """wandb in offline mode by default (WANDB_MODE overrides): files under OUT/wandb/."""

    def __init__(self, project: str, out: Path, run_name: str):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, dir=str(out), name=run_name, mode=os.environ.get("WANDB_MODE", "offline"),
                              reinit="create_new", settings=wandb.Settings(silent=True, console="off"))

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(_finite(metrics), step=step)

    def log_artifact(self, path: Path) -> None:
        if path.suffix.lower() == ".png":
            self.run.log({f"plots/{path.stem}": self.wandb.Image(str(path))})
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self) -> None:
        self.run.finish()


Factory = Callable[[str | None, Path, str, bool], RunLogger]

LOGGERS: dict[str, Factory] = {
    "jsonl": lambda t, out, name, fresh: JsonlLogger(Path(t) if t else out / "log.jsonl", fresh),
    "tensorboard": lambda t, out, name, fresh: TensorBoardLogger(Path(t) if t else out / "tensorboard", fresh),
    "mlflow": lambda t, out, name, fresh: MlflowLogger(
        t or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / 'mlflow.db').resolve()}", out, name),
    "wandb": lambda t, out, name, fresh: WandbLogger(t or "crossalign", out, name),
}


def parse_log_spec(spec: str) -> tuple[str, str | None]:
    name, _, target = spec.partition("=")
    name = name.strip().lower()
    if name not in LOGGERS:
        raise ValueError(f"unknown logger '{name}'; known: {', '.join(LOGGERS)} (NAME or NAME=TARGET)")
    return name, (target.strip() or None)


class MultiLogger:
    """Fans every call out to the chosen backends; `close(out)` logs the plots first."""

    def __init__(self, loggers: list[RunLogger]):
        self.loggers = loggers

    def log_params(self, params: dict[str, Any]) -> None:
        for lg in self.loggers:
            lg.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for lg in self.loggers:
            lg.log_metrics(metrics, step)

    def log_artifact(self, path: Path) -> None:
        for lg in self.loggers:
            lg.log_artifact(path)

    def close(self, out: Path | None = None) -> None:
        """Draw `curves.png` from `out/metrics.jsonl` if missing, log every PNG in `out`, then close."""
        if out is not None:
            curves, mj = out / "curves.png", out / "metrics.jsonl"
            if not curves.exists() and mj.exists() and mj.stat().st_size:
                from crossalign.evaluate.plots import plot_curves

                plot_curves(mj, curves)
            for p in sorted(out.glob("*.png")):
                self.log_artifact(p)
        for lg in self.loggers:
            lg.close()


def build_logger(specs: Sequence[str] | None, out: str | Path, params: dict[str, Any] | None = None,
                 run_name: str | None = None, fresh: bool = True) -> MultiLogger | None:
    """The loggers named in `specs` for a run folder `out` (None when `specs` is empty).

    Federated or other recipes call this too: `build_logger(["tensorboard"], out, flatten_params(cfg))`."""
    if not specs:
        return None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parsed = [parse_log_spec(s) for s in specs]  # every name checked before any backend starts
    name = run_name or out.resolve().name
    multi = MultiLogger([LOGGERS[n](t, out, name, fresh) for n, t in dict(parsed).items()])
    if params:
        multi.log_params(flatten_params(params))
    return multi
