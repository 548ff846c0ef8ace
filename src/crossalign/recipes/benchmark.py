"""`benchmark`: crossalign vs tuned classical baselines on the same cached features and splits."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from crossalign.align.io import load_run
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable
from crossalign.evaluate.baselines import run_baselines
from crossalign.evaluate.run_eval import evaluate_model
from crossalign.evaluate.seeds import aggregate

__all__ = ["benchmark", "directions"]


def directions(columns: list[str]) -> list[str]:
    return [f"{a}->{b}" for a in columns for b in columns if a != b]


def benchmark(cfg: RunConfig, out: str | Path, table: FeatureTable | None = None, progress: bool = True,
              methods: list[str] | None = None, seeds: int = 1) -> dict[str, dict[str, float]]:
    """Train crossalign (into OUT/run, or OUT/run-seed<S> for each of several seeds), fit the
    baselines with their hyperparameters chosen on validation, score all on the test split.

    Writes OUT/benchmark.json as {method: {metric: value}} with metrics.json's keys (over several
    seeds: the mean, plus `<metric>/sd` and `seeds`), OUT/baselines.json with what validation chose
    per seed, and OUT/train_results.json with which crossalign candidate won per seed."""
    from crossalign.recipes.align import prepare_features, train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if table is None:
        table, _ = prepare_features(cfg, progress)
    per_seed: dict[str, list[dict[str, float]]] = {}
    chosen: dict[str, Any] = {}
    winners: dict[str, Any] = {}
    for i in range(seeds):
        c = copy.deepcopy(cfg)
        c.train.seed = cfg.train.seed + i
        c.train.out = str(out / ("run" if seeds == 1 else f"run-seed{c.train.seed}"))
        run, _ = train(c, resume=False, table=table, progress=progress)
        model, c_run = load_run(run)
        per_seed.setdefault("crossalign", []).append(evaluate_model(model, c_run, table, "test").metrics)
        winners[str(c.train.seed)] = json.loads((Path(run) / "train_result.json").read_text())
        sel: dict[str, Any] = {}
        res = run_baselines(table, c.model.columns, c.train.train_split, "test", methods, c.train.seed,
                            val_split=c.train.val_split, progress=progress, selected=sel)
        chosen[str(c.train.seed)] = sel
        for name, m in res.items():
            per_seed.setdefault(name, []).append(m)
    results = {name: runs[0] if seeds == 1 else aggregate(runs) for name, runs in per_seed.items()}
    (out / "benchmark.json").write_text(json.dumps(results, indent=2))
    (out / "baselines.json").write_text(json.dumps(chosen, indent=2))
    (out / "train_results.json").write_text(json.dumps(winners, indent=2))
    return results
