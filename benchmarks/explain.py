"""Are explanations faithful? Deletion, pointing game and IG completeness on a trained scenes run.

    crossalign demo && python benchmarks/explain.py --run runs/demo/run --data runs/demo/data --split val
    python benchmarks/explain.py --run runs/demo/run --data runs/demo/data --split test

- Deletion: for pairs of the split (text-image, audio-image, sensor-text: every tower kind), remove the
  top 10 % of a side's units by attribution vs a random 10 % (8 draws); mean similarity drop of each,
  ratio of the means with a 95 % bootstrap interval over pairs. Target: top >= 3x random. Every
  candidate method of a side is measured (IG baselines, image fills, occlusion): the defaults in
  `crossalign.explain.methods.default_method` were chosen on `--split val`, then read on test.
- Pointing game: scenes with 2-3 objects; for each object its own caption phrase ("a large red circle
  at the top left") against the whole scene; the image's top grid cell (3 x 3) must be the object's
  cell. Target: >= 90 %, with a 95 % bootstrap interval. Chance: 1/9 (a cell), 1/n_objects (an object).
- IG completeness gap |sum(attr) - (f(x) - f(baseline))| relative to |score|. Target: < 1 %.
Writes benchmarks/results/explain[-SPLIT].json and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from crossalign.align.embedder import Embedder  # noqa: E402
from crossalign.data.manifest import load_manifest  # noqa: E402
from crossalign.datasets.scenes.scene import SceneObject, caption_en  # noqa: E402
from crossalign.explain import default_method, explain_side, side_units  # noqa: E402
from crossalign.explain.faithfulness import deletion, top_cell  # noqa: E402

PAIRS = (("text", "image"), ("audio", "image"), ("sensor", "text"))
# Candidates per modality: name -> explain_side options. The default path is listed as well.
CANDIDATES: dict[str, dict[str, dict[str, Any]]] = {
    "text": {
        "ig, [PAD] baseline": {"method": "ig", "ig_baseline": "pad"},
        "ig, [MASK] baseline": {"method": "ig", "ig_baseline": "mask"},
        "ig, mean over [PAD]/[MASK]/[UNK]": {"method": "ig", "ig_baseline": "expected"},
        "occlusion (drop a word)": {"method": "occlusion"},
    },
    "image": {
        "occlusion, flat median fill": {"method": "occlusion", "fill": "median"},
        "occlusion, median + background noise": {"method": "occlusion", "fill": "noise"},
    },
    "audio": {"occlusion (silence a window)": {"method": "occlusion"}},
    "sensor": {
        "ig, median baseline": {"method": "ig"},
        "occlusion (cell to median)": {"method": "occlusion"},
    },
}
# Rejected on val (benchmarks/results/explain-val.json): measured on val only.
VAL_ONLY = {"ig, [MASK] baseline"}
BOOT = 2000


def boot_ratio(top: list[float], rand: list[float], rng: np.random.Generator) -> list[float]:
    t, r = np.asarray(top), np.asarray(rand)
    idx = rng.integers(0, len(t), (BOOT, len(t)))
    ratios = t[idx].mean(1) / np.maximum(r[idx].mean(1), 1e-9)
    return [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]


def boot_mean(x: list[float], rng: np.random.Generator) -> list[float]:
    a = np.asarray(x, dtype=float)
    means = a[rng.integers(0, len(a), (BOOT, len(a)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def run_deletion(
    emb: Embedder, m: Any, rows: list[dict[str, Any]], split: str, only: str | None = None
) -> tuple[dict, dict]:
    recs: dict[str, dict[str, dict[str, list[float]]]] = {}
    gaps: dict[str, list[float]] = {}
    t_all = time.time()
    for i, r in enumerate(rows):
        for va, vb in PAIRS:
            items = {v: emb.read(v, [r[v]], m.base_dir)[0] for v in (va, vb)}
            z = {v: emb.embed_raw(v, [raw])[0] for v, raw in items.items()}
            score = float(z[va] @ z[vb])
            for col, other in ((va, vb), (vb, va)):
                for name, opts in CANDIDATES[col].items():
                    if (split != "val" and name in VAL_ONLY and name != only) or (only and name != only):
                        continue
                    t = time.time()
                    side = explain_side(emb, col, items[col], z[other], **opts)
                    dt = time.time() - t
                    d = deletion(emb, side, z[other], frac=0.1)
                    rec = recs.setdefault(col, {}).setdefault(name, {k: [] for k in ("top", "random", "k", "n", "s")})
                    for k, v in zip(("top", "random", "k", "n", "s"), (d.top_drop, d.random_drop, d.k, side.units.n, dt)):
                        rec[k].append(float(v))
                    if side.completeness_gap is not None:
                        gaps.setdefault(f"{col} ({name})", []).append(side.completeness_gap / max(abs(score), 1e-9))
                    if col == "image" and opts.get("fill") == "noise":  # cross-check: delete with a flat fill
                        flat = side_units(emb, col, items[col], fill="median")
                        d2 = deletion(emb, dataclasses.replace(side, units=flat), z[other], frac=0.1)
                        x = recs[col].setdefault(
                            "(noise-fill attribution, deleted with the flat fill)", {k: [] for k in ("top", "random", "k", "n", "s")}
                        )
                        for k, v in zip(("top", "random", "k", "n", "s"), (d2.top_drop, d2.random_drop, d2.k, flat.n, 0.0)):
                            x[k].append(float(v))
        print(f"pair {i + 1}/{len(rows)} ({time.time() - t_all:.0f} s)", flush=True)
    return recs, gaps


def run_pointing(emb: Embedder, m: Any, rows: list[dict[str, Any]], n: int, rng: random.Random) -> dict:
    multi = [r for r in rows if len(r.get("objects") or []) >= 2]
    phrases = rng.sample([(r, o) for r in multi for o in r["objects"]], min(n, sum(len(r["objects"]) for r in multi)))
    hits: dict[str, list[float]] = {}
    chance_obj = []
    for r, o in phrases:
        obj = SceneObject(o["shape"], o["color"], o["size"], tuple(o["cell"]))
        img = emb.read("image", [r["image"]], m.base_dir)[0]
        for label, text in (("phrase", caption_en([obj])), ("phrase without position", f"a {obj.size} {obj.color} {obj.shape}")):
            zt = emb.embed_raw("text", [text])[0]
            for fill in ("median", "noise") if label == "phrase" else ("noise",):
                side = explain_side(emb, "image", img, zt, method="occlusion", grid=3, fill=fill)
                hits.setdefault(f"{label}, {fill} fill", []).append(float(top_cell(side) == obj.cell))
        chance_obj.append(1 / len(r["objects"]))
    brng = np.random.default_rng(0)
    return {
        "phrases": len(phrases),
        "hit_rate": {k: {"mean": float(np.mean(v)), "ci95": boot_mean(v, brng)} for k, v in hits.items()},
        "chance_cell": 1 / 9,
        "chance_object": float(np.mean(chance_obj)),
    }


def _summary(v: dict[str, list[float]], brng: np.random.Generator) -> dict[str, Any]:
    return {
        "top_drop": float(np.mean(v["top"])),
        "random_drop": float(np.mean(v["random"])),
        "ratio": float(np.mean(v["top"]) / max(np.mean(v["random"]), 1e-9)),
        "ratio_ci95": boot_ratio(v["top"], v["random"], brng),
        "sides": len(v["top"]),
        "units_removed": float(np.mean(v["k"])),
        "units": float(np.mean(v["n"])),
        "seconds_per_side": float(np.mean(v["s"])),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/demo/run")
    ap.add_argument("--data", default="runs/demo/data")
    ap.add_argument("--split", default="test", help="val: choose methods; test: report")
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--phrases", type=int, default=150)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None, help="measure one candidate's deletion and add it to --out")
    a = ap.parse_args()
    out = Path(a.out or f"benchmarks/results/explain{'' if a.split == 'test' else '-' + a.split}.json")
    load_before = os.getloadavg()
    t0 = time.time()
    emb = Embedder.from_run(a.run)
    m = load_manifest(a.data)
    rows_split = [r for r in m.rows if r.get("split") == a.split]
    rng = random.Random(0)
    rows = rng.sample(rows_split, min(a.pairs, len(rows_split)))
    recs, gaps = run_deletion(emb, m, rows, a.split, a.only)
    if a.only:  # add one candidate (chosen on val) to an existing result: same rows, same seeds
        res = json.loads(out.read_text())
        for col, per in recs.items():
            for name, v in per.items():
                res["deletion"][col][name] = _summary(v, np.random.default_rng(0))
        for k, v in gaps.items():
            res["completeness_gap_rel"][k] = {"mean": float(np.mean(v)), "max": float(np.max(v))}
        res.setdefault("added", []).append({"candidate": a.only, "load_avg_before": load_before,
                                             "load_avg_after": os.getloadavg(), "seconds": round(time.time() - t0, 1)})
        out.write_text(json.dumps(res, indent=2))
        print(json.dumps({c: {n: _summary(v, np.random.default_rng(0)) for n, v in per.items()} for c, per in recs.items()}, indent=1))
        return
    pointing = run_pointing(emb, m, rows_split, a.phrases, rng)
    brng = np.random.default_rng(0)
    defaults = {c: default_method(emb, c)[0] for c in emb.model.columns}
    res = {
        "run": a.run,
        "split": a.split,
        "pairs": len(rows),
        "frac": 0.1,
        "defaults": defaults,
        "deletion": {col: {name: _summary(v, brng) for name, v in per.items()} for col, per in recs.items()},
        "pointing": pointing,
        "completeness_gap_rel": {k: {"mean": float(np.mean(v)), "max": float(np.max(v))} for k, v in gaps.items()},
        "seconds": round(time.time() - t0, 1),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"\n{a.split}: {len(rows)} scenes x {len(PAIRS)} pairs; defaults {defaults}")
    print("| side | method | units | removed | drop, top 10 % | drop, random 10 % | ratio [95 % CI] | s/side |")
    print("|---|---|---|---|---|---|---|---|")
    for col, per in res["deletion"].items():
        for name, v in per.items():
            lo, hi = v["ratio_ci95"]
            print(
                f"| {col} | {name} | {v['units']:.1f} | {v['units_removed']:.1f} | {v['top_drop']:.4f} | "
                f"{v['random_drop']:.4f} | {v['ratio']:.2f}x [{lo:.2f}, {hi:.2f}] | {v['seconds_per_side']:.1f} |"
            )
    p = res["pointing"]
    print(f"\npointing game, {p['phrases']} phrases, 3x3 cells, occlusion (chance: cell {p['chance_cell']:.3f}, "
          f"object {p['chance_object']:.3f})")
    for k, v in p["hit_rate"].items():
        print(f"  {k}: {v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]")
    for k, v in res["completeness_gap_rel"].items():
        print(f"IG completeness gap {k}: mean {100 * v['mean']:.4f} % of the score, max {100 * v['max']:.4f} %")
    print(f"load average before {load_before}, after {res['load_avg_after']}; {res['seconds']} s")


if __name__ == "__main__":
    main()
