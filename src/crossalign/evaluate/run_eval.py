"""`evaluate_run`: every metric of a saved run on one split of a manifest, as one flat dict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


import numpy as np
import torch

from crossalign.align.embed import embed_table
from crossalign.align.embedder import Embedder
from crossalign.align.io import load_run
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.data.extract import encode_column
from crossalign.data.features import FeatureTable, ViewSpec, build_view_encoder, encode_views, view_encoder
from crossalign.data.manifest import load_manifest
from crossalign.data.splits import ensure_splits
from crossalign.evaluate.classify import hard_negative, linear_probe, zero_shot
from crossalign.evaluate.diagnostics import space_diagnostics
from crossalign.evaluate.evaluators import RetrievalEvaluator
from crossalign.evaluate.prompts import Prompts, prompts_for

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
                   prompt: str | None = None, progress: bool = False, prompts: Prompts | None = None) -> EvalResult:
    """Every metric on one split. Zero-shot prompts: `prompts` (map/template), else `prompt`
    (a template such as "a photo of {}"), else derived from the training text (evaluate/prompts.py)."""
    model.eval()
    test, train = table.split(split), table.split(cfg.train.train_split)
    if len(test) < 2:
        raise ValueError(f"split '{split}' has {len(test)} usable rows")
    emb = embed_table(model, test)
    metrics = RetrievalEvaluator(test.groups())(emb)
    metrics.update(space_diagnostics(emb))
    text_cols = [c for c in model.columns if model.specs[c].modality == "text"]
    others = [c for c in model.columns if c not in text_cols]
    labels = test.meta("label")
    embedder = Embedder(model, cfg)
    prompt_info: dict[str, object] = {}
    if text_cols and all(lbl is not None for lbl in labels):
        classes = sorted({str(lbl) for lbl in table.meta("label") if lbl is not None})
        texts, how = prompts_for(classes, prompts or (Prompts(prompt) if prompt else None),
                                 train.meta(text_cols[0]), train.meta("label"))
        prompt_info = {"column": text_cols[0], "how": how, "prompts": dict(zip(classes, texts))}
        pe = embedder.embed(text_cols[0], texts)
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
        tr_emb = embed_table(model, train)
        for c in model.columns:
            metrics[f"{c}/probe_acc"] = linear_probe(tr_emb[c], [str(x) for x in train.meta("label")], emb[c],
                                                     [str(x) for x in labels])
    metrics["n_test"] = float(len(test))
    return EvalResult(metrics, emb, test, prompt_info)


def evaluate_run(run: str | Path, data: str | Path | None = None, split: str = "test",
                 out: str | Path | None = None, progress: bool = False, prompts: Prompts | None = None,
                 encoders: list[ViewSpec] | None = None) -> EvalResult:
    """Evaluate a saved run; writes `<out or run>/metrics.json` (and `prompts.json` for zero-shot).
    `encoders`, when given, must match what the run was trained with (else a ValueError says so)."""
    model, cfg = load_run(run)
    check_encoders(cfg, encoders or [])
    table = load_table(cfg, data, progress)
    res = evaluate_model(model, cfg, table, split, progress=progress, prompts=prompts)
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


