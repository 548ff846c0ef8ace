"""`tune`: Optuna search on the validation split (the test split is never read).

Features are extracted once; every trial trains heads on the cached train split and reports its
best validation metric. Search space: learning rate, temperature, head width/kind, objective.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import yaml

from crossalign.align.objectives import objective_entry
from crossalign.config import RunConfig
from crossalign.recipes.align import prepare_features, train
from crossalign.saved import atomic_write_text

if TYPE_CHECKING:
    import optuna

__all__ = ["tune", "OBJECTIVE_CHOICES"]

OBJECTIVE_CHOICES = ("infonce", "siglip")


def _write(path: Path, text: str) -> None:
    """Atomic, so workers finishing together on one storage never interleave their summaries."""
    atomic_write_text(path, text)


def _study(storage: str | None, name: str, seed: int) -> "optuna.Study":
    """A new in-memory study, or one in an RDB storage (created or resumed; shared by workers).

    With a storage, trials carry a heartbeat: a trial whose worker was killed is marked failed by
    the next worker, and the search goes on to the same number of completed trials."""
    import optuna

    if storage is None:
        return optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study = _open_shared(storage, name)
    # Workers started together must not draw the same random start-up trials: offset the seed.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials) + os.getpid())
    return study


def _open_shared(storage: str, name: str, attempts: int = 8) -> "optuna.Study":
    """Create or load the study; workers started together race to create the schema and the study.

    Optuna's schema set-up is not atomic (two workers on a fresh SQLite file fail with "table
    studies already exists" or a UNIQUE error on alembic_version), so a loser waits and retries:
    by then the winner's tables exist and the creation is a load."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=10, grace_period=30)
            return optuna.create_study(direction="maximize", storage=rdb, study_name=name, load_if_exists=True)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError,
                optuna.exceptions.DuplicatedStudyError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1) + random.random() * 0.2)  # jitter: the retries must not collide too
    raise AssertionError("unreachable")


def tune(cfg: RunConfig, trials: int = 10, out: str | Path = "runs/tune", epochs: int | None = None,
         seed: int = 0, progress: bool = True, storage: str | None = None, study_name: str = "crossalign",
         log: Sequence[str] | None = None) -> dict[str, Any]:
    """`trials` completed trials in all (with `storage`: counting those already in it, from any worker)."""
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
        if objective_entry(c.model.objective).views is None:  # a fixed-views objective stays as chosen
            c.model.objective = trial.suggest_categorical("objective", list(OBJECTIVE_CHOICES))
        if epochs:
            c.train.epochs = epochs
        c.train.out = str(out / f"trial-{trial.number:03d}")
        c.train.progress = False
        _, res = train(c, resume=False, table=table, progress=False, log=log)
        return res.best_metric

    study = _study(storage, study_name, seed)

    def completed() -> int:
        return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))

    bar = None
    if progress:
        from crossalign.progress import progress_bar

        bar = progress_bar(total=trials, initial=min(completed(), trials), desc="tune", unit="trial")
    while completed() < trials:  # other workers on the same storage count too
        study.optimize(objective, n_trials=1)
        if bar:
            bar.n = min(completed(), trials)
            bar.refresh()
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
    _write(out / "best.yaml", yaml.safe_dump(best.to_dict(), sort_keys=False, allow_unicode=True))
    summary = {"best_value": study.best_value, "best_params": p, "primary": cfg.train.primary,
               "study": study_name if storage else None, "storage": storage,
               "trials": [{"number": t.number, "value": t.value, "state": t.state.name, "params": t.params}
                          for t in study.trials]}
    _write(out / "tune.json", json.dumps(summary, indent=2))
    logging.getLogger(__name__).info("best %s = %.4f with %s", cfg.train.primary, study.best_value, p)
    return summary
