"""Machine-readable results: CLIP_benchmark's result schema per run (plus our direction keys) and one
CSV row per run in the style of open_clip's results table, so runs line up in a spreadsheet.

CLIP_benchmark names retrieval by what is retrieved: `image_retrieval_recall@k` is text -> image,
`text_retrieval_recall@k` is image -> text; those names are filled where a run has both views.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

__all__ = ["clip_benchmark_entry", "csv_rows", "write_csv"]

_CLIP_NAMES = {"text->image": "image_retrieval_recall@{k}", "image->text": "text_retrieval_recall@{k}"}


def clip_benchmark_entry(rep: dict[str, Any]) -> dict[str, Any]:
    res = rep["results"]["crossalign"]
    metrics: dict[str, float] = {}
    for d, name in _CLIP_NAMES.items():
        if d in res:
            for k in (1, 5, 10):
                metrics[name.format(k=k)] = res[d][f"R@{k}"]
    for d in rep["directions"]:
        for key in ("R@1", "R@5", "R@10", "MdR", "MRR"):
            metrics[f"{d}/{key}"] = res[d][key]
    return {
        "dataset": rep["card"]["data"],
        "model": "crossalign",
        "pretrained": rep["card"]["run"],
        "task": "zeroshot_retrieval",
        "language": "en",
        "metrics": metrics,
        "intervals": {d: {k: list(v) for k, v in res[d]["ci"].items()} for d in rep["directions"]},
        "baselines": {
            meth: {f"{d}/{k}": r[d][k] for d in rep["directions"] if d in r for k in ("R@1", "R@5", "R@10", "MRR")}
            for meth, r in rep["results"].items()
            if meth != "crossalign"
        },
        "n_test": rep["n_test"],
        "split": rep["split"],
        "crossalign_version": rep["card"]["version"],
        "git": rep["card"]["git"],
    }


def csv_rows(reps: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """open_clip-style: name, pretrained, then the average and one column per (direction, metric)."""
    dirs = sorted({d for r in reps for d in r["directions"]})
    head = ["name", "pretrained", "dataset", "n_test", "Average perf. (mean R@1)"]
    head += [f"{d} {k}" for d in dirs for k in ("R@1", "R@5", "R@10", "MRR")]
    rows = []
    for r in reps:
        res = r["results"]["crossalign"]
        row: dict[str, Any] = {
            "name": r["name"],
            "pretrained": r["card"]["run"],
            "dataset": r["card"]["data"],
            "n_test": r["n_test"],
            "Average perf. (mean R@1)": round(
                sum(res[d]["R@1"] for d in r["directions"]) / max(1, len(r["directions"])), 4
            ),
        }
        for d in dirs:
            for k in ("R@1", "R@5", "R@10", "MRR"):
                row[f"{d} {k}"] = round(res[d][k], 4) if d in res else ""
        rows.append(row)
    return head, rows


def write_csv(reps: Sequence[dict[str, Any]]) -> str:
    head, rows = csv_rows(reps)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=head)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
