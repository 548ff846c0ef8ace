"""`evaluate_run`: every metric of a saved run on one split of a manifest, as one flat dict."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossalign.align.embed import embed_table
from crossalign.align.io import load_run
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable, ViewSpec, encode_views, view_encoder
from crossalign.data.manifest import load_manifest
from crossalign.data.splits import ensure_splits
from crossalign.evaluate.plugins import DEFAULT_EVALUATORS, EvalSetup, build_evaluators
from crossalign.evaluate.prompts import Prompts

__all__ = ["EvalResult", "evaluate_run", "evaluate_model", "load_table"]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    embeddings: dict[str, np.ndarray]  # test-split embeddings per view
    table: FeatureTable  # the split's features (rows -> manifest)
    prompts: dict[str, object] = field(default_factory=dict)  # zero-shot prompts used, and how they were made


def load_table(cfg: RunConfig, data: str | Path | None = None, progress: bool = False) -> FeatureTable:
    m = ensure_splits(load_manifest(data or cfg.train.data), cfg.train.seed)
    return encode_views(m, cfg.model.views, batch_size=cfg.train.encode_batch_size, progress=progress)


def evaluate_model(model: AlignmentModel, cfg: RunConfig, table: FeatureTable, split: str = "test",
                   prompt: str | None = None, progress: bool = False, prompts: Prompts | None = None,
                   evaluators: Sequence[str] = DEFAULT_EVALUATORS) -> EvalResult:
    """Every metric of the named evaluators (evaluate/plugins.py) on one split, plus `n_test`.
    Zero-shot prompts: `prompts` (map/template), else `prompt` (a template such as "a photo of {}"),
    else derived from the training text (evaluate/prompts.py)."""
    model.eval()
    test, train = table.split(split), table.split(cfg.train.train_split)
    if len(test) < 2:
        raise ValueError(f"split '{split}' has {len(test)} usable rows")
    emb = embed_table(model, test)
    zs = prompts or (Prompts(prompt) if prompt else None)
    options = {"zeroshot": {"prompts": zs}} if "zeroshot" in evaluators else {}
    built = build_evaluators(EvalSetup(model, cfg, table, train, progress), evaluators, options)
    metrics: dict[str, float] = {}
    for ev in built.values():
        metrics.update(ev(emb, test))
    metrics["n_test"] = float(len(test))
    zeroshot = built.get("zeroshot")
    prompt_info = dict(getattr(zeroshot, "info", {})) if zeroshot is not None else {}
    return EvalResult(metrics, emb, test, prompt_info)


def evaluate_run(run: str | Path, data: str | Path | None = None, split: str = "test",
                 out: str | Path | None = None, progress: bool = False, prompts: Prompts | None = None,
                 encoders: list[ViewSpec] | None = None,
                 evaluators: Sequence[str] = DEFAULT_EVALUATORS) -> EvalResult:
    """Evaluate a saved run; writes `<out or run>/metrics.json` (and `prompts.json` for zero-shot).
    `encoders`, when given, must match what the run was trained with (else a ValueError says so);
    `evaluators` names entries of `evaluate.plugins.EVALUATORS`, in the order their metrics are written."""
    model, cfg = load_run(run)
    check_encoders(cfg, encoders or [])
    table = load_table(cfg, data, progress)
    res = evaluate_model(model, cfg, table, split, progress=progress, prompts=prompts, evaluators=evaluators)
    dest = Path(out) if out else Path(run)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "metrics.json").write_text(json.dumps(res.metrics, indent=2))
    if res.prompts:
        (dest / "prompts.json").write_text(json.dumps(res.prompts, indent=2, ensure_ascii=False))
    return res


def check_encoders(cfg: RunConfig, wanted: list[ViewSpec]) -> None:
    """A run's heads only fit the features they were trained on: refuse another encoder or options."""
    have = {v.column: v for v in cfg.model.views}
    for w in wanted:
        v = have.get(w.column)
        if v is None:
            raise ValueError(f"--encoder {w.column}: the run has no view '{w.column}' (views: {list(have)})")
        opts = {k: o for k, o in v.options.items() if k != "input_shape"}
        if (w.encoder and w.encoder != view_encoder(v)) or any(opts.get(k) != o for k, o in w.options.items()):
            raise ValueError(f"--encoder {w.column}={w.encoder or ''}{w.options or ''}: the run was trained with "
                             f"{view_encoder(v)} {opts}; its heads do not fit other features")


