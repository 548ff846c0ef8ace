"""`benchmark`: crossalign heads vs classical baselines on the same cached features and splits."""

from __future__ import annotations

import json
from pathlib import Path

from crossalign.align.io import load_run
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable
from crossalign.evaluate.baselines import run_baselines
from crossalign.evaluate.run_eval import evaluate_model

__all__ = ["benchmark", "directions"]


def directions(columns: list[str]) -> list[str]:
    return [f"{a}->{b}" for a in columns for b in columns if a != b]


def benchmark(cfg: RunConfig, out: str | Path, table: FeatureTable | None = None, progress: bool = True,
              methods: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Train crossalign (into OUT/run), fit the baselines, score all on the test split.
    Writes OUT/benchmark.json as {method: {metric: value}} with metrics.json's keys."""
    from crossalign.recipes.align import prepare_features, train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if table is None:
        table, _ = prepare_features(cfg, progress)
    cfg.train.out = str(out / "run")
    run, _ = train(cfg, resume=False, table=table, progress=progress)
    model, cfg = load_run(run)
    results = {"crossalign": evaluate_model(model, cfg, table, "test").metrics}
    results.update(run_baselines(table, cfg.model.columns, cfg.train.train_split, "test", methods, cfg.train.seed))
    (out / "benchmark.json").write_text(json.dumps(results, indent=2))
    return results
