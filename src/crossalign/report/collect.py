"""Everything a report shows about one run, gathered into plain data (numbers, strings, PNG data URIs)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crossalign.align.embedder import Embedder
from crossalign.align.io import load_run
from crossalign.evaluate.run_eval import evaluate_model, load_table
from crossalign.report import figures
from crossalign.report.card import peak_rss_mb, read_json, run_card
from crossalign.report.stats import baseline_ranks, bootstrap, metrics_from_ranks, model_ranks

__all__ = ["collect_run", "BASELINE_METHODS"]

log = logging.getLogger(__name__)
BASELINE_METHODS = ("cca", "kcca", "ridge", "procrustes", "encoder", "random")  # as `benchmark`, tuned on val


def _phase(card: dict[str, Any], name: str, t0: float) -> None:
    card["phases"][f"report: {name}"] = {
        "seconds": round(time.time() - t0, 2),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def _failures(
    emb: Embedder,
    ev: Any,
    directions: list[str],
    per_direction: int,
    explain_n: int,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Worst queries of each direction (true match ranked lowest), the wrong top hit, and for the first
    `explain_n` directions an explanation of why that wrong hit scored high."""
    from crossalign.explain import explain_pair
    from crossalign.explain.render import plot_explanation

    test, z = ev.table, ev.embeddings
    groups = test.groups()
    base = test.manifest.base_dir
    ids = [str(x) for x in test.meta("id")]
    out = []
    for n_dir, d in enumerate(directions):
        a, b = d.split("->")
        s = z[a] @ z[b].T  # (N, N)
        rel = np.eye(len(s), dtype=bool) if groups is None else groups[:, None] == groups[None, :]
        best = np.where(rel, s, -np.inf).max(1)
        rank = 1 + ((s >= best[:, None]) & ~rel).sum(1)
        for q in np.argsort(-rank, kind="stable")[:per_direction]:
            if rank[q] == 1:
                break
            wrong = int(np.argmax(np.where(rel[q], -np.inf, s[q])))
            item: dict[str, Any] = {
                "direction": d,
                "query": ids[q],
                "rank": int(rank[q]),
                "wrong": ids[wrong],
                "wrong_score": float(s[q, wrong]),
                "true_score": float(best[q]),
                "query_text": _show(test.meta(a)[q]),
                "wrong_text": _show(test.meta(b)[wrong]),
            }
            if n_dir < explain_n and not any(f["direction"] == d and "explanation" in f for f in out):
                say(f"explaining the worst {d} failure")
                qa = emb.read(a, [test.meta(a)[q]], base)[0]
                wb = emb.read(b, [test.meta(b)[wrong]], base)[0]
                ex = explain_pair(emb, (a, qa), (b, wb))
                item["explanation"] = ex.to_dict()
                item["png"] = figures.png_uri(
                    lambda p, ex=ex: plot_explanation(
                        ex, p, f"{d}: query {ids[q]} vs wrong hit {ids[wrong]} (similarity {ex.score:+.3f})"
                    )
                )
            out.append(item)
    return out


def _show(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 140 else s[:137] + "..."


def _extras(run: Path) -> dict[str, Any]:
    """Sections that exist only for some runs: federated rounds, fusion tasks, the language-model bridge."""
    out: dict[str, Any] = {}
    fed = read_json(run / "federation.json")
    if isinstance(fed, dict) and isinstance(fed.get("rounds"), list):
        out["federation"] = {
            "status": fed.get("status"),
            "best_round": fed.get("best_round"),
            "rounds": [
                {
                    k: r.get(k)
                    for k in (
                        "round",
                        "val_R@1",
                        "train_loss",
                        "train_failures",
                        "eval_failures",
                        "bytes_sent",
                        "seconds",
                    )
                }
                for r in fed["rounds"]
                if isinstance(r, dict)
            ],
            "plot": figures.rounds_plot([r for r in fed["rounds"] if isinstance(r, dict)]),
        }
    tasks = []
    for tj in sorted(run.glob("*/task.json")):
        meta = read_json(tj)
        metrics = read_json(tj.parent / "metrics.json") or read_json(tj.parent / "eval.json")
        if isinstance(meta, dict):
            tasks.append(
                {
                    "folder": tj.parent.name,
                    "task": meta.get("task") or meta.get("kind"),
                    "metrics": _flat(metrics) if isinstance(metrics, dict) else {},
                }
            )
    if tasks:
        out["fusion"] = tasks
    bridge = read_json(run / "bridge" / "eval.json")
    if isinstance(bridge, dict):
        out["bridge"] = _flat(bridge)
    return out


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def collect_run(
    run: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    n_boot: int = 1000,
    failures: int = 3,
    explain: int | None = None,
    say: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """All the report's data for one run. `explain`: explain the worst failure of the first N directions
    (default: every direction)."""
    run = Path(run)
    t0 = time.time()
    model, cfg = load_run(run)
    say(f"{run}: features of {data or cfg.train.data}")
    table = load_table(cfg, data)
    counts = {s: len(table.split(s)) for s in ("train", "val", "test")}
    card = run_card(run, cfg, counts)
    _phase(card, "load features", t0)
    t0 = time.time()
    say(f"{run}: evaluating on the {split} split")
    ev = evaluate_model(model, cfg, table, split)
    m = ev.metrics
    cols = list(ev.embeddings)
    directions = [f"{a}->{b}" for a in cols for b in cols if a != b]
    ranks = {"crossalign": model_ranks(ev.embeddings, ev.table.groups())}
    _phase(card, "evaluate", t0)
    t0 = time.time()
    say(f"{run}: baselines ({', '.join(BASELINE_METHODS)}) and bootstrap intervals")
    ranks.update(baseline_ranks(table, cols, cfg.train.train_split, split, BASELINE_METHODS, cfg.train.seed))
    results = {
        meth: {d: metrics_from_ranks(r[d]) | {"ci": bootstrap(r[d], n_boot)} for d in directions if d in r}
        for meth, r in ranks.items() if r  # `encoder` exists only for pairs of columns sharing an encoder
    }
    _phase(card, "baselines + bootstrap", t0)
    t0 = time.time()
    emb = Embedder(model, cfg, run)
    fails = _failures(emb, ev, directions, failures, len(directions) if explain is None else explain, say)
    _phase(card, "failures + explanations", t0)
    t0 = time.time()
    figs: dict[str, str] = {}
    if (run / "metrics.jsonl").exists():
        from crossalign.evaluate.plots import plot_curves

        figs["curves"] = figures.png_uri(lambda p: plot_curves(run / "metrics.jsonl", p))
    from crossalign.evaluate.plots import plot_gallery, plot_similarity

    pair = ("image", "text") if {"image", "text"} <= set(cols) else (cols[0], cols[1])
    figs["similarity"] = figures.png_uri(
        lambda p: plot_similarity(ev.embeddings[pair[0]], ev.embeddings[pair[1]], p, pair)
    )
    figs["ranks"] = figures.rank_histogram(ranks["crossalign"])
    if {"image", "text"} <= set(cols):
        test = ev.table
        images = [test.manifest.base_dir / p for p in test.meta("image")]
        figs["gallery"] = figures.png_uri(
            lambda p: plot_gallery(
                [str(t) for t in test.meta("text")[:4]],
                ev.embeddings["text"][:4],
                ev.embeddings["image"],
                images,
                p,
            )
        )
    _phase(card, "figures", t0)
    views = {k.split("/")[0] for k in m if "/" in k and "->" not in k and "-" not in k.split("/")[0]}
    return {
        "card": card,
        "name": run.name if run.name not in ("run", "") else f"{run.parent.name}/{run.name}",
        "split": split,
        "n_test": len(ev.table),
        "directions": directions,
        "columns": cols,
        "results": results,
        "metrics": m,
        "views": sorted(views & set(cols)),
        "failures": fails,
        "figures": figs,
        "extras": _extras(run),
        "n_boot": n_boot,
    }
