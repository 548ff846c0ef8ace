"""`evaluate_run`: every metric of a saved run on one split of a manifest, as one flat dict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


import numpy as np
import torch

from crossalign.align.embedder import Embedder
from crossalign.align.io import load_run
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.data.extract import encode_column
from crossalign.data.features import FeatureTable, build_view_encoder, encode_views
from crossalign.data.manifest import load_manifest
from crossalign.evaluate.classify import hard_negative, linear_probe, zero_shot
from crossalign.evaluate.diagnostics import space_diagnostics
from crossalign.evaluate.evaluators import RetrievalEvaluator

__all__ = ["EvalResult", "evaluate_run", "evaluate_model", "load_table"]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    embeddings: dict[str, np.ndarray]  # test-split embeddings per view
    table: FeatureTable  # the split's features (rows -> manifest)


def load_table(cfg: RunConfig, data: str | Path | None = None, progress: bool = False) -> FeatureTable:
    from crossalign.train.api import ensure_splits

    m = ensure_splits(load_manifest(data or cfg.train.data), cfg.train.seed)
    return encode_views(m, cfg.model.views, batch_size=cfg.train.encode_batch_size, progress=progress)


def _embed(model: AlignmentModel, table: FeatureTable) -> dict[str, np.ndarray]:
    from crossalign.train.align_task import embed_table

    raw = None
    tuned = [c for c in model.cfg.train_towers if c in model.towers and not model.specs[c].from_scratch]
    if tuned:
        from crossalign.train.align_task import _raw_column

        raw = {c: _raw_column(table, c, model.specs[c].modality) for c in tuned}
    return embed_table(model, table, raw=raw)


def evaluate_model(model: AlignmentModel, cfg: RunConfig, table: FeatureTable, split: str = "test",
                   prompt: str = "a {}", progress: bool = False) -> EvalResult:
    model.eval()
    test, train = table.split(split), table.split(cfg.train.train_split)
    if len(test) < 2:
        raise ValueError(f"split '{split}' has {len(test)} usable rows")
    emb = _embed(model, test)
    metrics = RetrievalEvaluator(test.groups())(emb)
    metrics.update(space_diagnostics(emb))
    text_cols = [c for c in model.columns if model.specs[c].modality == "text"]
    others = [c for c in model.columns if c not in text_cols]
    labels = test.meta("label")
    embedder = Embedder(model, cfg)
    if text_cols and all(lbl is not None for lbl in labels):
        classes = sorted({str(lbl) for lbl in table.meta("label") if lbl is not None})
        pe = embedder.embed(text_cols[0], [prompt.format(c) for c in classes])
        for c in others:
            for k, v in zero_shot(emb[c], [str(x) for x in labels], pe, classes).items():
                metrics[f"{c}/{k}"] = v
    if "text" in text_cols and "text_neg" in table.manifest.columns:
        view = next(v for v in cfg.model.views if v.column == "text")
        enc = build_view_encoder(view, table.manifest)
        sub = type(table.manifest)([table.manifest.rows[int(i)] for i in test.rows], table.manifest.path,
                                   table.manifest.base_dir)
        negf = encode_column(sub, "text_neg", enc, progress=progress, modality="text")
        if len(negf.rows) == len(test):
            with torch.inference_mode():
                neg = model.embed("text", torch.from_numpy(negf.features)).numpy()
            for c in others:
                for k, v in hard_negative(emb[c], emb["text"], neg, test.meta("neg_attr")).items():
                    metrics[f"{c}/{k}"] = v
    if all(lbl is not None for lbl in labels) and len(train) > 1:
        tr_emb = _embed(model, train)
        for c in model.columns:
            metrics[f"{c}/probe_acc"] = linear_probe(tr_emb[c], [str(x) for x in train.meta("label")], emb[c],
                                                     [str(x) for x in labels])
    metrics["n_test"] = float(len(test))
    return EvalResult(metrics, emb, test)


def evaluate_run(run: str | Path, data: str | Path | None = None, split: str = "test",
                 out: str | Path | None = None, progress: bool = False) -> EvalResult:
    """Evaluate a saved run; writes `<out or run>/metrics.json`."""
    model, cfg = load_run(run)
    table = load_table(cfg, data, progress)
    res = evaluate_model(model, cfg, table, split, progress=progress)
    dest = Path(out) if out else Path(run)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "metrics.json").write_text(json.dumps(res.metrics, indent=2))
    return res


