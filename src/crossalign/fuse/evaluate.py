"""Evaluation of a fused model: predictions in batches, metrics, and the same with each modality
removed (the model must still answer when a modality is missing)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crossalign.fuse.data import TaskData
from crossalign.fuse.metrics import TaskEvaluator
from crossalign.fuse.model import FusionModel

__all__ = ["evaluate_task", "predict_batches"]


@torch.inference_mode()
def predict_batches(model: FusionModel, data: TaskData, drop: list[str] | None = None,
                    batch_size: int = 256, probs: bool = False) -> np.ndarray:
    """Class ids (N,) / (N, W), or probabilities with `probs`; `drop` lists modalities removed."""
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(data), batch_size):
        sl = slice(s, s + batch_size)
        feats = {k: v[sl] for k, v in data.feats.items()}
        wm = data.word_mask[sl]
        present = {c: torch.zeros(wm.shape[0], dtype=torch.bool) for c in (drop or [])}
        logits = model(feats, wm, present).logits
        out.append((logits.softmax(-1) if probs else logits.argmax(-1)).numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


def evaluate_task(model: FusionModel, data: TaskData, kind: str, classes: list[str]) -> dict[str, Any]:
    """-> {"metrics": all modalities, "without": {modality: metrics}, "report": printable text}."""
    tg, wm = data.targets.numpy(), data.word_mask.numpy()
    evaluator = TaskEvaluator(kind, classes)
    metrics = evaluator(predict_batches(model, data), tg, wm)
    report = evaluator.report
    without = {}
    lines = [f"{'modalities':<22} {'accuracy':>9} {'macro-F1':>9}",
             f"{'all':<22} {metrics['accuracy']:9.3f} {metrics['macro_f1']:9.3f}"]
    if len(model.modalities) > 1:
        for c in model.modalities:
            m = evaluator(predict_batches(model, data, drop=[c]), tg, wm)
            without[c] = m
            lines.append(f"{'without ' + c:<22} {m['accuracy']:9.3f} {m['macro_f1']:9.3f}")
    text = report + "\nmodality removed at inference\n" + "\n".join(lines) + "\n"
    return {"metrics": metrics, "without": without, "report": text, "rows": len(data)}
