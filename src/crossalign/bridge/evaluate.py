"""`evaluate_bridge`: the bridge vs a retrieval baseline on the scenes test split, per input modality.

For each view column (image, audio, sensor ...) the same projector, trained on `train_columns`,
gets that view's aligned embedding of every test row; the retrieval baseline returns the caption of
the nearest training row's text embedding in the shared space and answers questions from that
row's scene. Metrics: attribute accuracy parsed from captions, QA exact match, corpus BLEU-4.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np

from crossalign.bridge.embeddings import aligned_embeddings
from crossalign.bridge.metrics import CaptionQAEvaluator
from crossalign.bridge.model import Bridge
from crossalign.bridge.prompts import CAPTION_PROMPT
from crossalign.datasets.scenes.qa import answer_question, objects_of, scene_questions

__all__ = ["evaluate_bridge", "format_table"]

log = logging.getLogger(__name__)

_EVAL_SEED = "bridge-eval"  # questions for evaluation are drawn independently of training


def _questions(row: dict[str, Any], n: int) -> list[tuple[str, str]]:
    qa = scene_questions(objects_of(row))
    return random.Random(f"{_EVAL_SEED}:{row.get('id')}").sample(qa, min(n, len(qa)))


def evaluate_bridge(folder: str | Path, data: str | Path, *, columns: list[str] | None = None,
                    limit: int = 100, questions_per_row: int = 2, split: str = "test",
                    bridge: Bridge | None = None, progress: bool = True, samples: int = 3) -> dict[str, Any]:
    """-> {"systems": {name: {metric: value}}, "transfer": {...}, "samples": {...}, "rows": n}."""
    bridge = bridge or Bridge.load(folder)
    emb_ = bridge.embedder
    cols = columns or [c for c, m in emb_.modalities.items() if m != "text"]
    text_col = next((c for c, m in emb_.modalities.items() if m == "text" and c == "text"),
                    next((c for c, m in emb_.modalities.items() if m == "text"), None))
    table = aligned_embeddings(emb_, data, progress=progress)
    test = table.where(split)[:limit] if limit else table.where(split)
    train = table.where("train")
    if len(test) == 0:
        raise ValueError(f"{data}: no rows in split '{split}'")
    truths = [objects_of(table.row(int(j)), f"{data} row {table.row(int(j)).get('id')}") for j in test]
    refs = [str(table.row(int(j)).get("text", "")) for j in test]
    qa = [(p, q, a) for p, j in enumerate(test) for q, a in _questions(table.row(int(j)), questions_per_row)]
    systems: dict[str, dict[str, float]] = {}
    shown: dict[str, list[dict[str, str]]] = {}
    evaluator = CaptionQAEvaluator(truths, refs, [a for _, _, a in qa])

    def score(name: str, caps: list[str], answers: list[str]) -> None:
        systems[name] = evaluator(caps, answers)
        shown[name] = [{"ref": r, "out": c} for r, c in zip(refs[:samples], caps[:samples])]

    bar = None
    if progress:
        from crossalign.progress import progress_bar

        bar = progress_bar(total=len(cols) * (1 + (text_col is not None)), desc="bridge eval", unit="system")
    for col in cols:
        z = table.emb[col][test]  # (n, dim)
        if text_col is not None:  # (a) retrieval baseline: nearest training caption in the shared space
            nn_ = np.argmax(z @ table.emb[text_col][train].T, axis=1)
            hits = [table.row(int(train[i])) for i in nn_]
            score(f"retrieval/{col}", [str(h.get("text", "")) for h in hits],
                  [answer_question(objects_of(hits[p]), q) for p, q, _ in qa])
            if bar:
                bar.update(1)
        caps = bridge.generate(z, [CAPTION_PROMPT] * len(z))
        answers = bridge.generate(z[[p for p, _, _ in qa]], [q for _, q, _ in qa], max_new_tokens=8)
        score(f"bridge/{col}", caps, answers)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    transfer = {}
    ref_col = bridge.cfg.train_columns[0]
    for col in cols:
        base = systems.get(f"bridge/{ref_col}", {}).get("attr/mean")
        if base is not None and col != ref_col and f"bridge/{col}" in systems:
            # None, not a missing key, when the reference scored 0: the ratio is undefined, say so
            transfer[f"{col}/{ref_col} attr ratio"] = systems[f"bridge/{col}"]["attr/mean"] / base if base else None
    return {"rows": int(len(test)), "qa_pairs": len(qa), "trained_on": bridge.cfg.train_columns,
            "systems": systems, "transfer": transfer, "samples": shown}


def format_table(res: dict[str, Any]) -> str:
    """Markdown table of the systems (one line each)."""
    keys = ["attr/mean", "attr/color", "attr/shape", "attr/size", "attr/position", "attr/count", "attr/scene",
            "qa/exact", "bleu4"]
    lines = ["| system | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, m in res["systems"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |")
    for k, v in res.get("transfer", {}).items():
        lines.append(f"\n{k}: {v:.3f}" if v is not None else f"\n{k}: undefined (the reference scored 0)")
    return "\n".join(lines)
