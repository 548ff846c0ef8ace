"""`tune`: Optuna search on the validation split (the test split is never read).

Features are extracted once; every trial trains heads on the cached train split and reports its
best validation metric. Search space: learning rate, temperature, head width/kind, objective.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from crossalign.config import RunConfig
from crossalign.train.api import prepare_features, train

__all__ = ["tune", "OBJECTIVE_CHOICES"]

OBJECTIVE_CHOICES = ("infonce", "siglip")


def tune(cfg: RunConfig, trials: int = 10, out: str | Path = "runs/tune", epochs: int | None = None,
         seed: int = 0, progress: bool = True) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table, _ = prepare_features(cfg, progress)
    # Drop the test split before any trial runs: tuning cannot see it even by accident.
    keep = [s != "test" for s in table.meta("split")]
    import numpy as np

    table = table.subset(np.asarray(keep, dtype=bool))

    def objective(trial: "optuna.Trial") -> float:
        c = copy.deepcopy(cfg)
        c.train.lr = trial.suggest_float("lr", 1e-4, 3e-3, log=True)
        c.model.temperature = trial.suggest_float("temperature", 0.02, 0.2, log=True)
        c.model.head.kind = trial.suggest_categorical("head", ["linear", "mlp"])
        if c.model.head.kind == "mlp":
            c.model.head.hidden = trial.suggest_categorical("hidden", [256, 512, 1024, 2048])
        if not c.model.objective.startswith("tri-"):
            c.model.objective = trial.suggest_categorical("objective", list(OBJECTIVE_CHOICES))
        if epochs:
            c.train.epochs = epochs
        c.train.out = str(out / f"trial-{trial.number:03d}")
        c.train.progress = False
        _, res = train(c, resume=False, table=table, progress=False)
        return res.best_metric

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    bar = None
    if progress:
        from crossalign.progress import progress_bar

        bar = progress_bar(total=trials, desc="tune", unit="trial")
    for _ in range(trials):
        study.optimize(objective, n_trials=1)
        if bar:
            bar.update(1)
            bar.set_postfix(best=f"{study.best_value:.3f}")
    if bar:
        bar.close()
    best = copy.deepcopy(cfg)
    p = study.best_params
    best.train.lr, best.model.temperature, best.model.head.kind = p["lr"], p["temperature"], p["head"]
    if "hidden" in p:
        best.model.head.hidden = p["hidden"]
    if "objective" in p:
        best.model.objective = p["objective"]
    (out / "best.yaml").write_text(yaml.safe_dump(best.to_dict(), sort_keys=False, allow_unicode=True))
    summary = {"best_value": study.best_value, "best_params": p, "primary": cfg.train.primary,
               "trials": [{"number": t.number, "value": t.value, "params": t.params} for t in study.trials]}
    (out / "tune.json").write_text(json.dumps(summary, indent=2))
    logging.getLogger(__name__).info("best %s = %.4f with %s", cfg.train.primary, study.best_value, p)
    return summary
