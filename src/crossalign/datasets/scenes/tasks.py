"""Built-in downstream tasks derived from the scenes manifest.

Both built-in tasks are built from each row's `objects` field, deterministically from (task, seed,
row id), so the same data always gives the same task rows:

- `report-consistency` (token tagging): the caption with 0-2 attribute words (size, colour, shape
  or a position word) changed so that they contradict the image. Every whitespace word is tagged
  `O` (not an attribute), `consistent` or `contradicted`. A changed caption still reads as a valid
  scene, so text alone cannot tell which words are wrong.
- `masked-attribute` (classification): the caption with one size/colour/shape word replaced by
  `[MASK]`; the label is the missing value, to be recovered from the other modalities.

Derived rows keep every column of the source row; `text` becomes the task input, the original
caption moves to `caption` (used for the alignment loss during multi-task training), and `tags`
(list aligned to `text.split()`) or `label` hold the targets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossalign.data.manifest import Manifest, write_manifest
from crossalign.datasets.scenes.scene import (
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    SceneObject,
    caption_en,
    scene_objects,
)

__all__ = [
    "BUILTIN_TASKS",
    "CONSISTENCY_TAGS",
    "MASKED_VALUES",
    "MASK_TOKEN",
    "TAG_OUTSIDE",
    "TASKS",
    "BuiltinTask",
    "make_task_rows",
    "scene_words",
    "write_task_manifest",
]

# The outside tag of the tagging convention (crossalign.fuse.tasks.TAG_OUTSIDE; a test keeps them equal:
# this package is earlier than fuse and does not import it).
TAG_OUTSIDE = "O"
CONSISTENCY_TAGS = [TAG_OUTSIDE, "consistent", "contradicted"]
MASK_TOKEN = "[MASK]"
MASKED_VALUES = [*SIZES, *COLORS, *SHAPES]


@dataclass(frozen=True)
class BuiltinTask:
    kind: str  # "tag": per-word labels in `tags`; "classify": one `label` per row
    classes: tuple[str, ...]  # every tag / label, in class-id order
    modalities: tuple[str, ...]  # default input columns
    align_columns: tuple[tuple[str, str], ...] = (("text", "caption"),)  # view column -> its alignment source


TASKS: dict[str, BuiltinTask] = {
    "report-consistency": BuiltinTask("tag", tuple(CONSISTENCY_TAGS), ("text", "image")),
    "masked-attribute": BuiltinTask("classify", tuple(MASKED_VALUES), ("text", "image", "audio", "sensor")),
}
# task name -> kind, for callers that only list or check names
BUILTIN_TASKS: dict[str, str] = {name: t.kind for name, t in TASKS.items()}


def scene_words(objs: list[SceneObject]) -> tuple[list[str], list[tuple[int, str, int]]]:
    """Caption words (as `caption_en(objs).split()`) and the attribute slots in them:
    (object index, attribute, word index) with attribute in size/color/shape/row/col."""
    words: list[str] = []
    slots: list[tuple[int, str, int]] = []
    for k, o in enumerate(objs):
        if k and k == len(objs) - 1:
            words.append("and")
        start = len(words)
        words += ["a", o.size, o.color, o.shape]
        slots += [(k, "size", start + 1), (k, "color", start + 2), (k, "shape", start + 3)]
        r, c = o.cell
        if (r, c) == (1, 1):
            words += ["in", "the", "center"]
        elif r == 1:
            words += ["on", "the", "left" if c == 0 else "right"]
            slots.append((k, "col", len(words) - 1))
        else:
            words += ["at", "the", "top" if r == 0 else "bottom"]
            slots.append((k, "row", len(words) - 1))
            if c != 1:
                words.append("left" if c == 0 else "right")
                slots.append((k, "col", len(words) - 1))
        if k < len(objs) - 2:
            words[-1] += ","
    return words, slots


def _contradict(objs: list[SceneObject], slot: tuple[int, str, int], word: str,
                rng: random.Random) -> str | None:
    """A replacement for `word` that makes the described object differ from the scene, or None."""
    k, attr, _ = slot
    o = objs[k]
    comma = "," if word.endswith(",") else ""
    if attr == "size":
        return "large" if o.size == "small" else "small"
    if attr == "color":
        return rng.choice([c for c in COLORS if c != o.color])
    if attr == "shape":
        return rng.choice([s for s in SHAPES if s != o.shape])
    # Position words flip within their phrase form ("top" <-> "bottom", "left" <-> "right") and only
    # onto a free cell, so the changed description cannot match another object of the scene.
    r, c = o.cell
    cell = (2 - r, c) if attr == "row" else (r, 2 - c)
    if cell in {p.cell for p in objs}:
        return None
    new = POSITIONS[cell].split()[0 if attr == "row" else -1]
    return new + comma


def make_task_rows(manifest: Manifest, task: str, seed: int = 0) -> list[dict[str, Any]]:
    """Derive the rows of a built-in task from a scenes manifest (deterministic in task, seed, id)."""
    if task not in BUILTIN_TASKS:
        raise ValueError(f"unknown built-in task '{task}'; known: {', '.join(BUILTIN_TASKS)}")
    out = []
    for i, row in enumerate(manifest.rows):
        where = f"{manifest.path or 'manifest'}: row {manifest.row_number(i)}"
        objs = scene_objects(row, where, "built-in tasks")
        words, slots = scene_words(objs)
        if " ".join(words) != caption_en(objs):  # the word map must follow the caption generator
            raise AssertionError(f"{where}: caption word map out of sync with scenes.caption_en")
        rng = random.Random(f"{task}:{seed}:{row.get('id', i)}")
        new = {k: v for k, v in row.items() if k != "_row"} | {"caption": row.get("text")}
        if task == "report-consistency":
            tags = [TAG_OUTSIDE] * len(words)
            for _, _, w in slots:
                tags[w] = "consistent"
            changed = 0
            want = rng.choice((0, 1, 2))
            for slot in rng.sample(slots, len(slots)):
                if changed == want:
                    break
                rep = _contradict(objs, slot, words[slot[2]], rng)
                if rep is not None:
                    words[slot[2]] = rep
                    tags[slot[2]] = "contradicted"
                    changed += 1
            new.update(text=" ".join(words), tags=tags, label=f"{changed} contradicted")
        else:
            _, attr, w = rng.choice([s for s in slots if s[1] in ("size", "color", "shape")])
            label = words[w]
            words[w] = MASK_TOKEN
            new.update(text=" ".join(words), label=label, masked_attr=attr)
        out.append(new)
    return out


def write_task_manifest(manifest: Manifest, task: str, out: str | Path, seed: int = 0) -> Path:
    """Write the derived task rows as JSONL with absolute media paths (so it can live anywhere)."""
    rows = make_task_rows(manifest, task, seed)
    for r in rows:
        for col in ("image", "audio", "sensor"):
            v = r.get(col)
            if isinstance(v, str) and v and not Path(v).is_absolute():
                r[col] = str((manifest.base_dir / v).resolve())
    return write_manifest(rows, out)
