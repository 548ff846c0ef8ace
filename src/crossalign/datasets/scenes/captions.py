"""Reading generated scene captions: the caption parser and per-attribute scores against the scene."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from crossalign.datasets.scenes.scene import ATTRIBUTES, COLORS, POSITIONS, SHAPES, SIZES

__all__ = ["parse_caption", "attribute_scores"]

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
        for a in ATTRIBUTES:
            sums[a] += _f1(Counter(o[a] for o in p if a in o), Counter(o[a] for o in t))
        sums["count"] += float(len(p) == len(t))
        key = lambda o: tuple(o.get(a, "") for a in ATTRIBUTES)  # noqa: E731
        sums["scene"] += float(sorted(map(key, p)) == sorted(map(key, t)))
    n = max(len(preds), 1)
    out = {f"attr/{k}": sums[k] / n for k in (*ATTRIBUTES, "count", "scene")}
    out["attr/mean"] = sum(out[f"attr/{k}"] for k in (*ATTRIBUTES, "count")) / 5
    return out
