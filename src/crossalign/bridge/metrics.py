"""Scoring generated text: QA exact match (overall and per question type), corpus BLEU-4, the
bridge's evaluator (scene attributes parsed from captions + both of those, one flat dict per system)
and the intervals every figure carries (Wilson for proportions, percentile bootstrap for means)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossalign.datasets.scenes.captions import attribute_scores
from crossalign.datasets.scenes.qa import QUESTION_TYPES, normalize_answer, question_type

__all__ = ["CaptionQAEvaluator", "qa_exact_match", "corpus_bleu", "wilson_interval", "bootstrap_interval",
           "paired_bootstrap_diff", "ATTR_KEYS"]

ATTR_KEYS = ("attr/mean", "attr/color", "attr/shape", "attr/size", "attr/position", "attr/count", "attr/scene")
_BOOT = 2000  # bootstrap resamples: percentile ends move by < 0.005 between seeds at n ~ 200


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion hits/n (well-behaved at 0, 1 and small n)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = hits / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def bootstrap_interval(values: np.ndarray, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item values (resampling items)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, len(v), size=(_BOOT, len(v)))  # (resamples, n)
    means = v[idx].mean(1)
    a = (1 - level) / 2
    return (float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


def paired_bootstrap_diff(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, float]:
    """mean(a - b) over the same items with its bootstrap interval and the share of resamples <= 0."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    lo, hi = bootstrap_interval(d, seed)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(_BOOT, len(d)))
    return {"diff": float(d.mean()), "lo": lo, "hi": hi, "p_not_above": float((d[idx].mean(1) <= 0).mean())}


def qa_exact_match(preds: list[str], answers: list[str]) -> float:
    if not answers:
        return float("nan")
    return sum(normalize_answer(p) == normalize_answer(a) for p, a in zip(preds, answers)) / len(answers)


def _ngrams(words: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def corpus_bleu(preds: list[str], refs: list[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 (Papineni et al. 2002), one reference per prediction, lower-cased word tokens,
    add-one smoothing on the n-gram precisions (Lin & Och 2004) so short corpora do not collapse to 0."""
    match, total = [0] * max_n, [0] * max_n
    plen = rlen = 0
    for p, r in zip(preds, refs):
        pw, rw = re.findall(r"\w+", p.lower()), re.findall(r"\w+", r.lower())
        plen, rlen = plen + len(pw), rlen + len(rw)
        for n in range(1, max_n + 1):
            pn, rn = _ngrams(pw, n), _ngrams(rw, n)
            match[n - 1] += sum((pn & rn).values())
            total[n - 1] += sum(pn.values())
    if plen == 0 or match[0] == 0:
        return 0.0
    logp = sum(math.log((match[i] + (i > 0)) / (total[i] + (i > 0))) for i in range(max_n)) / max_n
    bp = 1.0 if plen > rlen else math.exp(1 - rlen / plen)
    return bp * math.exp(logp)


@dataclass
class CaptionQAEvaluator:
    """One generating system against a split: scene attributes parsed from its captions, exact match
    of its answers (overall and per question type), corpus BLEU-4 of its captions vs the
    references. Primary: attr/mean (higher). `details` gives the per-item scores and intervals."""

    truths: list[list[dict[str, Any]]]  # each row's scene objects
    refs: list[str]  # each row's reference caption
    answers: list[str]  # the reference answer of every question asked
    questions: list[str] = field(default_factory=list)  # the questions (for per-type scores)
    primary: str = "attr/mean"
    greater_is_better: bool = True

    def __call__(self, captions: list[str], answers: list[str]) -> dict[str, float]:
        return self.details(captions, answers)[0]

    def per_row(self, captions: list[str]) -> dict[str, np.ndarray]:
        """attr key -> (rows,) per-row score (their means are `attribute_scores`)."""
        rows = [attribute_scores([c], [t]) for c, t in zip(captions, self.truths)]
        return {k: np.array([r[k] for r in rows]) for k in ATTR_KEYS}

    def details(self, captions: list[str], answers: list[str]
                ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, int], dict[str, np.ndarray]]:
        """(metrics, 95 % intervals, items per metric, per-row attribute scores)."""
        rows = self.per_row(captions)
        m = {k: float(v.mean()) for k, v in rows.items()}
        ci = {k: list(bootstrap_interval(v)) for k, v in rows.items()}
        n = {k: len(v) for k, v in rows.items()}
        hit = np.array([normalize_answer(p) == normalize_answer(a) for p, a in zip(answers, self.answers)])
        types = np.array([question_type(q) for q in self.questions] if self.questions else [""] * len(hit))
        for key, sel in [("qa/exact", np.ones(len(hit), bool))] + [(f"qa/{t}", types == t) for t in QUESTION_TYPES]:
            k = int(sel.sum())
            if k or key == "qa/exact":
                m[key] = float(hit[sel].mean()) if k else float("nan")
                ci[key], n[key] = list(wilson_interval(int(hit[sel].sum()), k)), k
        m["bleu4"] = corpus_bleu(captions, self.refs)
        return m, ci, n, rows
