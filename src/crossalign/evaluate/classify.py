"""Zero-shot classification from label prompts, hard-negative accuracy and linear probes."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

__all__ = ["zero_shot", "hard_negative", "linear_probe"]


def zero_shot(query: np.ndarray, labels: Sequence[str], prompt_emb: np.ndarray,
              classes: Sequence[str]) -> dict[str, float]:
    """query (N, D) vs one embedded prompt per class (C, D): top-1 accuracy and balanced accuracy."""
    pred = np.asarray(classes)[(query @ prompt_emb.T).argmax(1)]
    y = np.asarray(labels)
    per = [float((pred[y == c] == c).mean()) for c in classes if (y == c).any()]
    return {"zeroshot_acc": float((pred == y).mean()), "zeroshot_bal_acc": float(np.mean(per)) if per else 0.0}


def hard_negative(query: np.ndarray, pos_text: np.ndarray, neg_text: np.ndarray,
                  attrs: Sequence[str | None] | None = None) -> dict[str, float]:
    """Does the query score its true caption above the one-attribute-swapped caption?"""
    win = (query * pos_text).sum(1) > (query * neg_text).sum(1)
    out = {"hardneg_acc": float(win.mean())}
    if attrs is not None:
        by: dict[str, list[bool]] = defaultdict(list)
        for w, a in zip(win, attrs):
            if a:
                by[a].append(bool(w))
        out.update({f"hardneg_acc/{a}": float(np.mean(v)) for a, v in sorted(by.items())})
    return out


def linear_probe(train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray, test_y: Sequence[str]) -> float:
    """Logistic-regression accuracy of an embedding for the `label` column (fit on train only)."""
    from sklearn.linear_model import LogisticRegression

    if len(set(train_y)) < 2:
        return float("nan")
    import warnings

    clf = LogisticRegression(max_iter=2000, C=1.0)
    with warnings.catch_warnings():  # convergence / class-count notices are for developers, not results
        warnings.simplefilter("ignore")
        clf.fit(train_x, list(train_y))
    return float(clf.score(test_x, list(test_y)))
