"""`evaluate_bridge`: the bridge vs a retrieval baseline on the scenes test split, per input modality.

For each view column (image, audio, sensor ...) the same projector, trained on `train_columns`,
gets that view's aligned embedding of every test row; the retrieval baseline returns the caption of
the nearest training row's text embedding in the shared space and answers questions from that
row's scene. Metrics: attribute accuracy parsed from captions, QA exact match overall and per
question type (colour, shape, size, position, count), corpus BLEU-4; every figure with its 95 %
interval (bootstrap over rows for attribute means, Wilson for exact-match proportions), and paired
bootstrap intervals for bridge - retrieval and for the cross-modal transfer ratio.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np

from crossalign.bridge.embeddings import aligned_embeddings
from crossalign.bridge.metrics import _BOOT, CaptionQAEvaluator, paired_bootstrap_diff
from crossalign.bridge.model import Bridge
from crossalign.bridge.prompts import CAPTION_PROMPT
from crossalign.datasets.scenes.qa import QUESTION_TYPES, answer_question, objects_of, question_type, scene_questions

__all__ = ["evaluate_bridge", "format_table"]

log = logging.getLogger(__name__)

_EVAL_SEED = "bridge-eval"  # questions for evaluation are drawn independently of training


def _questions(row: dict[str, Any], per_type: int) -> list[tuple[str, str]]:
    """Up to `per_type` questions of each type the scene allows (count, colour, shape, position, size)."""
    qa = scene_questions(objects_of(row))
    rng = random.Random(f"{_EVAL_SEED}:{row.get('id')}")
    out = []
    for t in QUESTION_TYPES:
        of_t = [x for x in qa if question_type(x[0]) == t]
        out += rng.sample(of_t, min(per_type, len(of_t)))
    return out


def _ratio_interval(a: np.ndarray, b: np.ndarray, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of mean(a) / mean(b) over the same rows."""
    idx = np.random.default_rng(seed).integers(0, len(a), size=(_BOOT, len(a)))  # (resamples, rows)
    r = a[idx].mean(1) / np.maximum(b[idx].mean(1), 1e-12)
    return [float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))]


def evaluate_bridge(folder: str | Path, data: str | Path, *, columns: list[str] | None = None,
                    limit: int = 0, questions_per_type: int = 2, split: str = "test",
                    bridge: Bridge | None = None, progress: bool = True, samples: int = 3) -> dict[str, Any]:
    """-> {"systems": {name: {metric: value}}, "intervals": {name: {metric: [lo, hi]}}, "n": {name:
    {metric: items}}, "vs_retrieval": {view: paired diff}, "transfer": {...}, "samples": {...}, "rows": n}."""
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
    qa = [(p, q, a) for p, j in enumerate(test) for q, a in _questions(table.row(int(j)), questions_per_type)]
    systems: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, dict[str, int]] = {}
    per_row: dict[str, dict[str, np.ndarray]] = {}
    shown: dict[str, list[dict[str, str]]] = {}
    asked: dict[str, list[dict[str, str]]] = {}
    evaluator = CaptionQAEvaluator(truths, refs, [a for _, _, a in qa], [q for _, q, _ in qa])

    def score(name: str, caps: list[str], answers: list[str]) -> None:
        systems[name], intervals[name], counts[name], per_row[name] = evaluator.details(caps, answers)
        shown[name] = [{"ref": r, "out": c} for r, c in zip(refs[:samples], caps[:samples])]
        asked[name] = [{"question": q, "answer": a, "out": o} for (_, q, a), o in list(zip(qa, answers))[:samples]]

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
    transfer: dict[str, Any] = {}
    ref_col = bridge.cfg.train_columns[0]
    for col in cols:
        base = systems.get(f"bridge/{ref_col}", {}).get("attr/mean")
        if base is not None and col != ref_col and f"bridge/{col}" in systems:
            # None, not a missing key, when the reference scored 0: the ratio is undefined, say so
            transfer[f"{col}/{ref_col} attr ratio"] = systems[f"bridge/{col}"]["attr/mean"] / base if base else None
            if base:
                transfer[f"{col}/{ref_col} attr ratio interval"] = _ratio_interval(
                    per_row[f"bridge/{col}"]["attr/mean"], per_row[f"bridge/{ref_col}"]["attr/mean"])
    vs = {col: paired_bootstrap_diff(per_row[f"bridge/{col}"]["attr/mean"], per_row[f"retrieval/{col}"]["attr/mean"])
          for col in cols if f"retrieval/{col}" in per_row}
    return {"rows": int(len(test)), "qa_pairs": len(qa), "trained_on": bridge.cfg.train_columns,
            "systems": systems, "intervals": intervals, "n": counts, "vs_retrieval": vs, "transfer": transfer,
            "samples": shown, "qa_samples": asked}


def _cell(res: dict[str, Any], name: str, key: str) -> str:
    v = res["systems"][name].get(key)
    if v is None or v != v:
        return "-"
    ci = res.get("intervals", {}).get(name, {}).get(key)
    return f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v:.3f}"


def format_table(res: dict[str, Any]) -> str:
    """Markdown tables: attributes from captions, then QA exact match per question type; each
    figure with its 95 % interval; then bridge - retrieval and the transfer ratios."""
    out = []
    for keys in (["attr/mean", "attr/color", "attr/shape", "attr/size", "attr/position", "attr/count", "attr/scene",
                  "bleu4"], ["qa/exact", *(f"qa/{t}" for t in QUESTION_TYPES)]):
        out += ["| system | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        out += [f"| {name} | " + " | ".join(_cell(res, name, k) for k in keys) + " |" for name in res["systems"]]
        out.append("")
    any_n = next(iter(res.get("n", {}).values()), {})
    if any_n:
        out.append("items: " + ", ".join(f"{k} {v}" for k, v in any_n.items() if k.startswith("qa/") or k == "attr/mean"))
    for col, d in res.get("vs_retrieval", {}).items():
        out.append(f"bridge - retrieval, {col}, attr/mean: {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]")
    tr = res.get("transfer", {})
    for k, v in tr.items():
        if k.endswith("interval"):
            continue
        ci = tr.get(f"{k} interval")
        out.append(f"{k}: {v:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") if v is not None
                   else f"{k}: undefined (the reference scored 0)")
    return "\n".join(out)
