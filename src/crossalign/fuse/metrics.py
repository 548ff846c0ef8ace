"""Task metrics: sklearn classification reports (token level for tagging) and entity-level scores.

Entities: with BIO tags (`B-X`, `I-X`) an entity is a B-X followed by its I-X words; with plain
tags every word whose tag is not the outside tag `O` is a one-word entity of that tag (the
report-consistency task: each contradicted or consistent attribute word). An entity counts as
found only when its span and type both match exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossalign.fuse.tasks import TAG_OUTSIDE

__all__ = ["TaskEvaluator", "bootstrap_macro_f1", "classification_metrics", "entity_metrics", "entity_spans", "task_metrics"]


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: list[str],
                           prefix: str = "") -> tuple[dict[str, float], str]:
    """-> flat dict (accuracy, macro/micro P/R/F1, per-class P/R/F1) and sklearn's text report."""
    from sklearn.metrics import classification_report

    labels = list(range(len(classes)))
    kw: dict[str, Any] = {"labels": labels, "target_names": classes, "zero_division": 0}
    rep = classification_report(y_true, y_pred, output_dict=True, **kw)
    text = classification_report(y_true, y_pred, digits=3, **kw)
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    out = {f"{prefix}accuracy": float((yt == yp).mean()) if len(yt) else 0.0}
    for avg in ("macro avg", "micro avg", "weighted avg"):
        if avg in rep:
            key = avg.split()[0]
            for m in ("precision", "recall", "f1-score"):
                out[f"{prefix}{key}_{m.replace('-score', '')}"] = float(rep[avg][m])
    if f"{prefix}micro_f1" not in out:  # sklearn omits "micro avg" when it equals accuracy
        out[f"{prefix}micro_f1"] = out[f"{prefix}accuracy"]
    for c in classes:
        for m in ("precision", "recall", "f1-score"):
            out[f"{prefix}{c}/{m.replace('-score', '')}"] = float(rep[c][m])
    return out, text


def entity_spans(tags: Sequence[str], outside: str = TAG_OUTSIDE) -> set[tuple[int, int, str]]:
    """(start, end exclusive, type) of every entity in one tag sequence."""
    bio = any(t.startswith(("B-", "I-")) for t in tags)
    spans: set[tuple[int, int, str]] = set()
    if not bio:
        return {(i, i + 1, t) for i, t in enumerate(tags) if t != outside}
    start, typ = -1, ""
    for i, t in enumerate([*tags, outside]):
        inside = t.startswith("I-") and typ == t[2:] and start >= 0
        if not inside:
            if start >= 0:
                spans.add((start, i, typ))
            start, typ = (i, t[2:]) if t.startswith(("B-", "I-")) else (-1, "")
    return spans


def entity_metrics(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                   outside: str = TAG_OUTSIDE) -> dict[str, float]:
    """Exact-match entity precision/recall/F1 per type, micro and macro (flat keys, `entity/` prefix)."""
    tp: dict[str, int] = {}
    n_true: dict[str, int] = {}
    n_pred: dict[str, int] = {}
    for t, p in zip(true, pred):
        st, sp = entity_spans(t, outside), entity_spans(p, outside)
        for s in st:
            n_true[s[2]] = n_true.get(s[2], 0) + 1
        for s in sp:
            n_pred[s[2]] = n_pred.get(s[2], 0) + 1
        for s in st & sp:
            tp[s[2]] = tp.get(s[2], 0) + 1

    def prf(a: int, np_: int, nt: int) -> tuple[float, float, float]:
        p = a / np_ if np_ else 0.0
        r = a / nt if nt else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    out: dict[str, float] = {}
    types = sorted(set(n_true) | set(n_pred))
    f1s = []
    for ty in types:
        p, r, f = prf(tp.get(ty, 0), n_pred.get(ty, 0), n_true.get(ty, 0))
        out.update({f"entity/{ty}/precision": p, f"entity/{ty}/recall": r, f"entity/{ty}/f1": f})
        if n_true.get(ty, 0):
            f1s.append(f)
    p, r, f = prf(sum(tp.values()), sum(n_pred.values()), sum(n_true.values()))
    out.update({"entity/micro_precision": p, "entity/micro_recall": r, "entity/micro_f1": f,
                "entity/macro_f1": float(np.mean(f1s)) if f1s else 0.0})
    return out


def task_metrics(kind: str, classes: list[str], targets: np.ndarray, preds: np.ndarray,
                 word_mask: np.ndarray | None = None) -> tuple[dict[str, float], str]:
    """Classification: sklearn report over items. Tagging: token-level report over real words plus
    entity-level scores. Returns (flat metrics, printable report)."""
    if kind == "classify":
        return classification_metrics(targets.tolist(), preds.tolist(), classes)
    assert word_mask is not None
    valid = word_mask & (targets >= 0)
    m, text = classification_metrics(targets[valid].tolist(), preds[valid].tolist(), classes)
    true_tags = [[classes[k] for k in targets[i][valid[i]]] for i in range(len(targets))]
    pred_tags = [[classes[k] for k in preds[i][valid[i]]] for i in range(len(preds))]
    ent = entity_metrics(true_tags, pred_tags)
    m.update(ent)
    lines = [f"{'entity type':>24} {'precision':>9} {'recall':>9} {'f1':>9}"]
    for ty in sorted({k.split('/')[1] for k in ent if k.count('/') == 2}):
        lines.append(f"{ty:>24} {ent[f'entity/{ty}/precision']:9.3f} {ent[f'entity/{ty}/recall']:9.3f} "
                     f"{ent[f'entity/{ty}/f1']:9.3f}")
    lines.append(f"{'micro':>24} {ent['entity/micro_precision']:9.3f} {ent['entity/micro_recall']:9.3f} "
                 f"{ent['entity/micro_f1']:9.3f}")
    lines.append(f"{'macro f1':>24} {'':9} {'':9} {ent['entity/macro_f1']:9.3f}")
    return m, "token level\n" + text + "\nentity level\n" + "\n".join(lines) + "\n"


@dataclass
class TaskEvaluator:
    """A task head's predictions (class ids (N,) or tag ids (N, W)) against the targets: the flat
    `task_metrics` dict; `report` keeps the printable report of the last call. Primary: macro_f1."""

    kind: str  # classify | tag
    classes: list[str]
    primary: str = "macro_f1"
    greater_is_better: bool = True
    report: str = ""

    def __call__(self, preds: np.ndarray, targets: np.ndarray, word_mask: np.ndarray | None = None) -> dict[str, float]:
        metrics, self.report = task_metrics(self.kind, self.classes, targets, preds, word_mask)
        return metrics


def _class_counts(targets: np.ndarray, preds: np.ndarray, mask: np.ndarray, n_classes: int) -> np.ndarray:
    """Per item and class: (tp, fp, fn) -> (N, 3, C); items are rows (tagging: their real words)."""
    t = np.where(mask, targets, -1).reshape(len(targets), -1)  # (N, W) or (N, 1)
    p = np.where(mask, preds, -1).reshape(len(preds), -1)
    out = np.zeros((len(t), 3, n_classes), np.int64)
    for c in range(n_classes):
        out[:, 0, c] = ((t == c) & (p == c)).sum(1)
        out[:, 1, c] = ((t != c) & (t >= 0) & (p == c)).sum(1)
        out[:, 2, c] = ((t == c) & (p != c)).sum(1)
    return out


def _macro_f1(counts: np.ndarray) -> np.ndarray:
    """(..., 3, C) summed counts -> (...) macro-F1 (a class with nothing true or predicted scores 0,
    as sklearn's zero_division=0 with every label listed)."""
    tp, fp, fn = counts[..., 0, :], counts[..., 1, :], counts[..., 2, :]
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0).mean(-1)


def bootstrap_macro_f1(targets: np.ndarray, preds: dict[str, np.ndarray], n_classes: int,
                       word_mask: np.ndarray | None = None, reference: str | None = None, n_boot: int = 2000,
                       seed: int = 0, level: float = 0.95) -> dict[str, dict[str, float]]:
    """Macro-F1 of each prediction set with a percentile interval from resampling the items (rows, i.e.
    whole texts/scenes, not single words); with `reference`, also the paired difference to it (the same
    resampled rows for both). -> {name: {macro_f1, lo, hi[, diff, diff_lo, diff_hi]}}."""
    targets = np.asarray(targets)
    mask = np.ones(targets.shape, bool) if word_mask is None else (np.asarray(word_mask) & (targets >= 0))
    counts = {k: _class_counts(targets, np.asarray(v), mask, n_classes) for k, v in preds.items()}
    rng = np.random.default_rng(seed)
    n = len(targets)
    w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])  # (B, N) draws
    a = (1 - level) / 2
    boot = {k: _macro_f1(np.einsum("bn,nkc->bkc", w, c)) for k, c in counts.items()}
    out: dict[str, dict[str, float]] = {}
    for k, c in counts.items():
        r = {"macro_f1": float(_macro_f1(c.sum(0))), "lo": float(np.quantile(boot[k], a)),
             "hi": float(np.quantile(boot[k], 1 - a))}
        if reference is not None and reference in boot:
            d = boot[k] - boot[reference]
            r.update(diff=r["macro_f1"] - float(_macro_f1(counts[reference].sum(0))),
                     diff_lo=float(np.quantile(d, a)), diff_hi=float(np.quantile(d, 1 - a)))
        out[k] = r
    return out
