"""Questions about a scene that its object list answers, and their answers.

Questions are generated only where the answer is unambiguous (e.g. "What colour is the large
shape?" only when exactly one object is large), and every question can be answered from the
scene's object list alone, which is also how the bridge's retrieval baseline answers them.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from crossalign.datasets.scenes.scene import COLORS, POSITIONS, SHAPES, SIZES

__all__ = ["COUNT_WORDS", "QUESTION_TYPES", "scene_questions", "answer_question", "normalize_answer", "objects_of",
           "question_type"]

COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}

Obj = dict[str, Any]


def objects_of(row: dict[str, Any], where: str = "") -> list[Obj]:
    """A scenes row's `objects`, checked: the bridge's QA and attribute metrics need them."""
    objs = row.get("objects")
    if not isinstance(objs, list) or not objs:
        raise ValueError(f"{where or row.get('id', '?')}: field 'objects' missing or empty (bridge QA and "
                         "attribute metrics need scenes-style rows)")
    return objs


def _pos(o: Obj) -> str:
    return POSITIONS[tuple(o["cell"])]


def _unique(objs: list[Obj], key: Callable[[Obj], Any], value: Any) -> Obj | None:
    hits = [o for o in objs if key(o) == value]
    return hits[0] if len(hits) == 1 else None


def scene_questions(objs: list[Obj]) -> list[tuple[str, str]]:
    """Every unambiguous (question, answer) pair for a scene, in a fixed order."""
    qa = [("How many shapes are there?", COUNT_WORDS.get(len(objs), str(len(objs))))]
    if len(objs) == 1:  # a lone object is "the shape": the plainest way to ask about it
        o = objs[0]
        qa += [("What colour is the shape?", o["color"]), ("What shape is it?", o["shape"]),
               ("Where is the shape?", _pos(o)), ("Is the shape small or large?", o["size"])]
    for size in SIZES:
        o = _unique(objs, lambda o: o["size"], size)
        if o:
            qa.append((f"What colour is the {size} shape?", o["color"]))
    for shape in SHAPES:
        o = _unique(objs, lambda o: o["shape"], shape)
        if o:
            qa.append((f"What colour is the {shape}?", o["color"]))
    for color in COLORS:
        o = _unique(objs, lambda o: o["color"], color)
        if o:
            qa.append((f"What shape is the {color} object?", o["shape"]))
            qa.append((f"Where is the {color} {o['shape']}?", _pos(o)))
            qa.append((f"Is the {color} {o['shape']} small or large?", o["size"]))
    return qa


_Q_PATTERNS: list[tuple[re.Pattern[str], Callable[[list[Obj], re.Match[str]], str]]] = []


def _q(pattern: str) -> Callable[[Callable[[list[Obj], re.Match[str]], str]], Callable[..., str]]:
    def deco(fn: Callable[[list[Obj], re.Match[str]], str]) -> Callable[..., str]:
        _Q_PATTERNS.append((re.compile(pattern, re.I), fn))
        return fn
    return deco


def _lone(objs: list[Obj], field: str) -> str:
    if len(objs) != 1:
        return ""
    return _pos(objs[0]) if field == "position" else str(objs[0][field])


# a lone object, asked about plainly: registered first so no two-word pattern below can claim them
for _pat, _field in ((r"^what colou?r is the shape\b", "color"), (r"^what shape is it\b", "shape"),
                     (r"^where is the shape\b", "position"), (r"^is the shape small or large", "size")):
    _Q_PATTERNS.append((re.compile(_pat, re.I), lambda objs, m, f=_field: _lone(objs, f)))


@_q(r"^how many shapes")
def _count(objs: list[Obj], m: re.Match[str]) -> str:
    return COUNT_WORDS.get(len(objs), str(len(objs)))


@_q(r"^what colou?r is the (small|large) shape")
def _color_by_size(objs: list[Obj], m: re.Match[str]) -> str:
    o = _unique(objs, lambda o: o["size"], m.group(1).lower())
    return o["color"] if o else ""


@_q(r"^what colou?r is the (circle|square|triangle|star)")
def _color_by_shape(objs: list[Obj], m: re.Match[str]) -> str:
    o = _unique(objs, lambda o: o["shape"], m.group(1).lower())
    return o["color"] if o else ""


@_q(r"^what shape is the (\w+) object")
def _shape_by_color(objs: list[Obj], m: re.Match[str]) -> str:
    o = _unique(objs, lambda o: o["color"], m.group(1).lower())
    return o["shape"] if o else ""


@_q(r"^where is the (\w+) (\w+)")
def _where(objs: list[Obj], m: re.Match[str]) -> str:
    o = _unique(objs, lambda o: (o["color"], o["shape"]), (m.group(1).lower(), m.group(2).lower()))
    return _pos(o) if o else ""


@_q(r"^is the (\w+) (\w+) small or large")
def _size(objs: list[Obj], m: re.Match[str]) -> str:
    o = _unique(objs, lambda o: (o["color"], o["shape"]), (m.group(1).lower(), m.group(2).lower()))
    return o["size"] if o else ""


def answer_question(objs: list[Obj], question: str) -> str:
    """Answer one of the generated question forms from an object list ('' when it does not apply)."""
    for pat, fn in _Q_PATTERNS:
        m = pat.search(question.strip())
        if m:
            return fn(objs, m)
    return ""


# Question type (what the answer names) by the question's opening words, for per-type scores.
QUESTION_TYPES = ("color", "shape", "size", "position", "count")
_TYPE_PATTERNS = (("count", r"^how many\b"), ("color", r"^what colou?r\b"), ("shape", r"^what shape\b"),
                  ("position", r"^where\b"), ("size", r"\bsmall or large\b"))


def question_type(question: str) -> str:
    """One of QUESTION_TYPES for the generated question forms; '' for any other question."""
    q = question.strip().lower()
    return next((t for t, pat in _TYPE_PATTERNS if re.search(pat, q)), "")


def normalize_answer(s: str) -> str:
    """Lower case, no punctuation, no leading article; digits become words (for exact match)."""
    s = re.sub(r"[^\w\s]", " ", s.lower())
    words = [w for w in s.split() if w not in ("the", "a", "an", "it", "is", "at", "on", "in")]
    words = [COUNT_WORDS.get(int(w), w) if w.isdigit() else w for w in words]
    return " ".join(words)
