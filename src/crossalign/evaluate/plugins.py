"""Evaluators that need the model beside the embeddings (zero-shot, hard negatives, linear probes),
and the registry `evaluate_model` builds its list from: name -> factory(setup, **options).

A factory gets the `EvalSetup` (model, config, the whole table and the training split) and returns
an `Evaluator`; an evaluator that does not apply to the data (no labels, no `text_neg` column)
returns no keys. Unknown names and options are errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from crossalign.align.embed import embed_table
from crossalign.align.embedder import Embedder
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.data.extract import encode_column
from crossalign.data.features import FeatureTable, build_view_encoder
from crossalign.evaluate.classify import hard_negative, linear_probe, zero_shot
from crossalign.evaluate.evaluators import DiagnosticsEvaluator, Evaluator, RetrievalEvaluator
from crossalign.evaluate.prompts import Prompts, prompts_for

__all__ = ["DEFAULT_EVALUATORS", "EVALUATORS", "EvalSetup", "HardNegativeEvaluator", "LinearProbeEvaluator",
           "ZeroShotEvaluator", "build_evaluators", "parse_evaluators", "register_evaluator", "unregister_evaluator"]


@dataclass
class EvalSetup:
    model: AlignmentModel
    cfg: RunConfig
    table: FeatureTable  # every row (zero-shot classes come from all labels)
    train: FeatureTable  # the training split (prompts derived from its text; probes fit on it)
    progress: bool = False

    def text_columns(self) -> list[str]:
        return [c for c in self.model.columns if self.model.specs[c].modality == "text"]


def _labels(table: FeatureTable) -> list[Any] | None:
    labels = table.meta("label")
    return labels if all(lbl is not None for lbl in labels) else None


@dataclass
class ZeroShotEvaluator:
    """Each non-text view classifies its rows against one embedded prompt per class (evaluate/prompts.py
    says how prompts are chosen). `info` holds the prompts used after a call. Primary: zeroshot_acc."""

    setup: EvalSetup
    prompts: Prompts | None = None
    primary: str = "zeroshot_acc"
    greater_is_better: bool = True
    info: dict[str, object] = field(default_factory=dict)

    def __call__(self, emb: dict[str, np.ndarray], table: FeatureTable | None = None) -> dict[str, float]:
        s, out = self.setup, {}
        text_cols = s.text_columns()
        labels = _labels(table) if table is not None else None
        if not text_cols or labels is None:
            return out
        classes = sorted({str(lbl) for lbl in s.table.meta("label") if lbl is not None})
        texts, how = prompts_for(classes, self.prompts, s.train.meta(text_cols[0]), s.train.meta("label"))
        self.info = {"column": text_cols[0], "how": how, "prompts": dict(zip(classes, texts))}
        pe = Embedder(s.model, s.cfg).embed(text_cols[0], texts)
        for c in (c for c in s.model.columns if c not in text_cols):
            for k, v in zero_shot(emb[c], [str(x) for x in labels], pe, classes).items():
                out[f"{c}/{k}"] = v
        return out


@dataclass
class HardNegativeEvaluator:
    """Each non-text view must score its own caption (`text`) above the manifest's `text_neg` caption
    (one attribute swapped), overall and per `neg_attr`. Primary: hardneg_acc."""

    setup: EvalSetup
    primary: str = "hardneg_acc"
    greater_is_better: bool = True

    def __call__(self, emb: dict[str, np.ndarray], table: FeatureTable | None = None) -> dict[str, float]:
        s, out = self.setup, {}
        text_cols = s.text_columns()
        man = s.table.manifest
        if table is None or "text" not in text_cols or "text_neg" not in man.columns:
            return out
        view = next(v for v in s.cfg.model.views if v.column == "text")
        sub = type(man)([man.rows[int(i)] for i in table.rows], man.path, man.base_dir)
        negf = encode_column(sub, "text_neg", build_view_encoder(view, man), progress=s.progress, modality="text")
        if len(negf.rows) != len(table):  # a caption that failed to encode: no row-aligned comparison
            return out
        with torch.inference_mode():
            neg = s.model.embed("text", torch.from_numpy(negf.features)).numpy()
        for c in (c for c in s.model.columns if c not in text_cols):
            for k, v in hard_negative(emb[c], emb["text"], neg, table.meta("neg_attr")).items():
                out[f"{c}/{k}"] = v
        return out


@dataclass
class LinearProbeEvaluator:
    """Logistic regression on each view's embedding, fit on the training split's `label`, scored on
    this split. Primary: probe_acc."""

    setup: EvalSetup
    primary: str = "probe_acc"
    greater_is_better: bool = True

    def __call__(self, emb: dict[str, np.ndarray], table: FeatureTable | None = None) -> dict[str, float]:
        s = self.setup
        labels = _labels(table) if table is not None else None
        if labels is None or len(s.train) < 2:
            return {}
        tr_emb = embed_table(s.model, s.train)
        tr_y = [str(x) for x in s.train.meta("label")]
        return {f"{c}/probe_acc": linear_probe(tr_emb[c], tr_y, emb[c], [str(x) for x in labels])
                for c in s.model.columns}


EVALUATORS: dict[str, Callable[..., Evaluator]] = {
    "retrieval": lambda setup: RetrievalEvaluator(),
    "diagnostics": lambda setup: DiagnosticsEvaluator(),
    "zeroshot": ZeroShotEvaluator,
    "hardneg": HardNegativeEvaluator,
    "probe": LinearProbeEvaluator,
}
# What `evaluate_model` runs unless told otherwise, in the order its metrics are written.
DEFAULT_EVALUATORS: tuple[str, ...] = ("retrieval", "diagnostics", "zeroshot", "hardneg", "probe")


def register_evaluator(name: str, factory: Callable[..., Evaluator]) -> None:
    """Add an evaluator (a plug-in's `register()` calls this); `crossalign eval --evaluators` names it."""
    if name in EVALUATORS:
        raise ValueError(f"evaluator '{name}' is registered already")
    EVALUATORS[name] = factory


def unregister_evaluator(name: str) -> None:
    """Remove a registered evaluator (tests put the registry back as they found it)."""
    EVALUATORS.pop(name, None)


def parse_evaluators(text: str | None) -> tuple[str, ...]:
    """`--evaluators retrieval,probe` -> names in order; None -> the defaults. Unknown names are errors."""
    from crossalign.plugins import load_plugins

    load_plugins()
    if not text:
        return DEFAULT_EVALUATORS
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in EVALUATORS]
    if unknown or not names:
        raise ValueError(f"--evaluators: unknown {unknown or 'empty list'}; known: {', '.join(EVALUATORS)}")
    return names


def build_evaluators(setup: EvalSetup, names: Sequence[str] = DEFAULT_EVALUATORS,
                     options: dict[str, dict[str, Any]] | None = None) -> dict[str, Evaluator]:
    """name -> evaluator, built with `options[name]` (keyword arguments of its factory)."""
    options = dict(options or {})
    unknown = [n for n in [*names, *options] if n not in EVALUATORS]
    if unknown:
        raise ValueError(f"unknown evaluator(s) {unknown}; known: {', '.join(EVALUATORS)}")
    stray = [n for n in options if n not in names]
    if stray:
        raise ValueError(f"options for evaluator(s) {stray} that are not in the list {list(names)}")
    out = {}
    for n in names:
        try:
            out[n] = EVALUATORS[n](setup, **options.get(n, {}))
        except TypeError as e:  # an option the factory does not take
            raise ValueError(f"evaluator '{n}': {e}") from e
    return out
