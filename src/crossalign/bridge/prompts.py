"""Training examples for the bridge from scene rows: the caption and simple question-answer pairs
(the questions and their answers come from `crossalign.datasets.scenes.qa`)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from crossalign.datasets.scenes.qa import objects_of, scene_questions

__all__ = ["Example", "CAPTION_PROMPT", "examples_for_row"]

CAPTION_PROMPT = "Describe this."


@dataclass(frozen=True)
class Example:
    row: int  # index into the embedding table
    kind: str  # "caption" or "qa"
    prompt: str
    answer: str


def examples_for_row(i: int, row: dict[str, Any], tasks: list[str], qa_per_row: int, seed: int) -> list[Example]:
    """Caption example plus `qa_per_row` QA examples drawn reproducibly per row."""
    out = []
    if "caption" in tasks:
        text = row.get("text")
        if not isinstance(text, str) or not text:
            raise ValueError(f"{row.get('id', i)}: field 'text' (the caption) missing")
        out.append(Example(i, "caption", CAPTION_PROMPT, text))
    if "qa" in tasks and qa_per_row > 0:
        qa = scene_questions(objects_of(row))
        rng = random.Random(f"{seed}:{row.get('id', i)}")
        for q, a in rng.sample(qa, min(qa_per_row, len(qa))):
            out.append(Example(i, "qa", q, a))
    return out
