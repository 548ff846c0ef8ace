"""Scoring generated text: scene attributes parsed from captions, QA exact match, corpus BLEU-4."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from crossalign.bridge.prompts import normalize_answer
from crossalign.data.scenes import COLORS, POSITIONS, SHAPES, SIZES

__all__ = ["parse_caption", "attribute_scores", "qa_exact_match", "corpus_bleu", "ATTRS"]

ATTRS = ("color", "shape", "size", "position")
# Longest phrases first so "top left" is not read as "top".
_POS = sorted(POSITIONS.values(), key=len, reverse=True)
_WORD = {"color": list(COLORS), "shape": list(SHAPES), "size": list(SIZES)}
_SHAPE_RE = re.compile(r"\b(" + "|".join(SHAPES) + r")s?\b")


def parse_caption(text: str) -> list[dict[str, str]]:
    """'a small red circle at the top left and a large blue star in the center' -> objects.

    The caption is cut after each shape word; each piece's first colour/size word and position phrase
    belong to that shape (a position may trail into the next piece, before its article).
    """
    t = text.lower()
    shapes = list(_SHAPE_RE.finditer(t))
    objs = []
    for n, m in enumerate(shapes):
        start = shapes[n - 1].end() if n else 0
        end = shapes[n + 1].start() if n + 1 < len(shapes) else len(t)
        head, tail = t[start:m.start()], t[m.end():end]
        # the tail up to the next article holds this object's position ("... circle at the top left and a ...")
        tail = re.split(r"\b(?:and|a|an)\b|,", tail, maxsplit=1)[0]
        o = {"shape": m.group(1)}
        for attr in ("color", "size"):
            hit = [w for w in _WORD[attr] if re.search(rf"\b{w}\b", head)]
            if hit:
                o[attr] = max(hit, key=lambda w: head.rfind(w))  # the word nearest the shape
        pos = next((p for p in _POS if re.search(rf"\b{p}\b", tail)), None)
        if pos:
            o["position"] = pos
        objs.append(o)
    return objs


def _f1(pred: Counter[str], true: Counter[str]) -> float:
    if not pred and not true:
        return 1.0
    hit = sum((pred & true).values())
    if hit == 0:
        return 0.0
    p, r = hit / sum(pred.values()), hit / sum(true.values())
    return 2 * p * r / (p + r)


def _truth(objs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"color": o["color"], "shape": o["shape"], "size": o["size"], "position": POSITIONS[tuple(o["cell"])]}
            for o in objs]


def attribute_scores(preds: list[str], truths: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Per attribute: multiset F1 of the values in the caption vs the scene, averaged over rows;
    count: the caption names the right number of objects; scene: every object exactly right;
    mean: the average of the four attributes and count (the headline attribute accuracy)."""
    sums: Counter[str] = Counter()
    for text, objs in zip(preds, truths):
        p, t = parse_caption(text), _truth(objs)
        for a in ATTRS:
            sums[a] += _f1(Counter(o[a] for o in p if a in o), Counter(o[a] for o in t))
        sums["count"] += float(len(p) == len(t))
        key = lambda o: tuple(o.get(a, "") for a in ATTRS)  # noqa: E731
        sums["scene"] += float(sorted(map(key, p)) == sorted(map(key, t)))
    n = max(len(preds), 1)
    out = {f"attr/{k}": sums[k] / n for k in (*ATTRS, "count", "scene")}
    out["attr/mean"] = sum(out[f"attr/{k}"] for k in (*ATTRS, "count")) / 5
    return out


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
