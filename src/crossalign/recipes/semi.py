"""`train_semi` and `benchmark_semi`: the `train` / `benchmark` programs with unpaired items.

Both go through `crossalign.recipes.align.train` (same Trainer, run folder, checkpoints) with a
`SemiAlignmentTask`, and evaluate exactly as supervised runs do. The run folder gains `semi.json`
(settings, pair and item counts); it loads with `load_run` like any run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from crossalign.align.io import RUN_FORMAT, RUN_KIND
from crossalign.config import RunConfig
from crossalign.data.manifest import load_manifest
from crossalign.semi.config import SemiConfig
from crossalign.saved import atomic_write_json, write_contract
from crossalign.semi.data import SemiData, Unpaired, load_semi_data, paired_fraction

__all__ = ["apply_fraction", "benchmark_semi", "prepare_semi", "train_semi"]

log = logging.getLogger(__name__)


def prepare_semi(cfg: RunConfig, semi: SemiConfig, progress: bool = True) -> SemiData:
    """Encode the manifest (rows may lack views) and any unpaired manifests; apply the paired fraction."""
    from crossalign.recipes.align import ensure_splits

    m = ensure_splits(load_manifest(cfg.train.data), cfg.train.seed)
    data, _ = load_semi_data(m, cfg.model.views, unpaired=semi.unpaired, batch_size=cfg.train.encode_batch_size,
                             progress=progress, train_split=cfg.train.train_split)
    return apply_fraction(data, semi.paired_fraction, cfg)


def apply_fraction(data: SemiData, fraction: float | None, cfg: RunConfig) -> SemiData:
    """Keep `fraction` of the complete training rows paired; the rest join the unpaired items."""
    if fraction is None or fraction >= 1:
        return data
    pf = paired_fraction(data.table, fraction, cfg.train.seed, cfg.train.train_split, cfg.model.columns)
    merged = {c: np.concatenate([pf.unpaired.features[c], data.unpaired.features[c]])
              if c in data.unpaired.features else pf.unpaired.features[c] for c in pf.unpaired.features}
    return SemiData(pf.table, Unpaired(merged))


def train_semi(cfg: RunConfig, semi: SemiConfig, *, data: SemiData | None = None, resume: bool = True,
               progress: bool | None = None, stop_after: int | None = None):  # type: ignore[no-untyped-def]
    """Train with pairs and unpaired items; returns (run folder, TrainResult) like `train`."""
    from crossalign.train.semi_task import SemiAlignmentTask
    from crossalign.recipes.align import train

    progress = cfg.train.progress if progress is None else progress
    data = data if data is not None else prepare_semi(cfg, semi, progress)
    n_pairs = len(data.table.split(cfg.train.train_split))
    if n_pairs < 2:
        raise ValueError(f"need at least 2 paired training rows, got {n_pairs} (raise --paired-fraction, or use "
                         "`crossalign align-unpaired` for no pairs at all)")

    def factory(model, c, tr, va, dist):  # type: ignore[no-untyped-def]
        return SemiAlignmentTask(model, c, tr, va, dist, unpaired=data.unpaired, semi=semi, fit_inputs=False)

    # Unpaired items join the input standardisation of every candidate before its closed form is fitted
    # (`none` keeps the pairs-only statistics: the honest pairs-only baseline).
    uses = data.unpaired.total() > 0 and (semi.method != "none" or semi.unimodal > 0)
    extra = {c: x for c, x in data.unpaired.features.items() if len(x)} if uses else None
    run, res = train(cfg, table=data.table, task_factory=factory, resume=resume, progress=progress,
                     stop_after=stop_after, norm_extra=extra)
    info: dict[str, Any] = semi.to_dict() | {"paired_rows": n_pairs, "unpaired_items": data.unpaired.counts()}
    atomic_write_json(Path(run) / "semi.json", info)
    write_contract(run, RUN_KIND, RUN_FORMAT, ["semi.json"])
    return run, res


def benchmark_semi(cfg: RunConfig, semi: SemiConfig, out: str | Path, *, data: SemiData | None = None,
                   methods: list[str] | None = None, progress: bool = True) -> dict[str, dict[str, float]]:
    """`benchmark` with a paired fraction: crossalign (with `semi.method`) and every baseline fitted
    on the same pairs (unpaired rows are out of the baselines' train split). Writes OUT/benchmark.json."""
    from crossalign.align.io import load_run
    from crossalign.evaluate.baselines import run_baselines
    from crossalign.evaluate.run_eval import evaluate_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else prepare_semi(cfg, semi, progress)
    cfg.train.out = str(out / "run")
    run, _ = train_semi(cfg, semi, data=data, resume=False, progress=progress)
    model, cfg = load_run(run)
    name = "crossalign" if semi.method == "none" else f"crossalign+{semi.method}"
    results = {name: evaluate_model(model, cfg, data.table, "test").metrics}
    results.update(run_baselines(data.table, cfg.model.columns, cfg.train.train_split, "test", methods,
                                 cfg.train.seed))
    (out / "benchmark.json").write_text(json.dumps(results, indent=2))
    return results
