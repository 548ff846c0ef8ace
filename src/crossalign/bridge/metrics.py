"""Scoring generated text: QA exact match, corpus BLEU-4, and the bridge's evaluator (scene
attributes parsed from captions + both of those, one flat dict per system)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from crossalign.datasets.scenes.captions import attribute_scores
from crossalign.datasets.scenes.qa import normalize_answer

__all__ = ["CaptionQAEvaluator", "qa_exact_match", "corpus_bleu"]


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
    of its answers, corpus BLEU-4 of its captions vs the references. Primary: attr/mean (higher)."""

    truths: list[list[dict[str, Any]]]  # each row's scene objects
    refs: list[str]  # each row's reference caption
    answers: list[str]  # the reference answer of every question asked
    primary: str = "attr/mean"
    greater_is_better: bool = True

    def __call__(self, captions: list[str], answers: list[str]) -> dict[str, float]:
        return {**attribute_scores(captions, self.truths), "qa/exact": qa_exact_match(answers, self.answers),
                "bleu4": corpus_bleu(captions, self.refs)}
