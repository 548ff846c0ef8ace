"""Are explanations faithful? Deletion, pointing game and IG completeness on a trained scenes run.

    python benchmarks/explain.py --run runs/demo/run --data runs/demo/data --pairs 30 --phrases 60

- Deletion: for test pairs (text-image, audio-image, sensor-text: every tower kind), remove the top
  10 % of a side's units by attribution vs a random 10 % (8 draws); mean similarity drop of each.
  Target: top >= 3x random.
- Pointing game: test scenes with 2-3 objects; for each object its own caption phrase ("a large red
  circle at the top left") against the whole scene; the image's top grid cell (3 x 3) must be the
  object's cell. Target: >= 90 %. Chance: 1/9 for a random cell, 1/n_objects for a random object.
- IG completeness gap |sum(attr) - (f(x) - f(baseline))| relative to |score|. Target: < 1 %.
Writes benchmarks/results/explain.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from crossalign.align.embedder import Embedder  # noqa: E402
from crossalign.data.manifest import load_manifest  # noqa: E402
from crossalign.datasets.scenes.scene import SceneObject, caption_en  # noqa: E402
from crossalign.explain import explain_pair, explain_side  # noqa: E402
from crossalign.explain.faithfulness import deletion, top_cell  # noqa: E402

PAIRS = (("text", "image"), ("audio", "image"), ("sensor", "text"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/demo/run")
    ap.add_argument("--data", default="runs/demo/data")
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--phrases", type=int, default=60)
    ap.add_argument("--variants", type=int, default=5, help="pairs also explained with the other method")
    ap.add_argument("--ig-phrases", type=int, default=10, help="pointing-game phrases also run with IG")
    ap.add_argument("--out", default="benchmarks/results/explain.json")
    a = ap.parse_args()
    load_before = os.getloadavg()
    emb = Embedder.from_run(a.run)
    m = load_manifest(a.data)
    test = [r for r in m.rows if r.get("split") == "test"]
    rng = random.Random(0)
    rows = rng.sample(test, min(a.pairs, len(test)))
    dels: dict[str, dict[str, list[float]]] = {}
    gaps: dict[str, list[float]] = {}
    secs: dict[str, list[float]] = {}
    t_all = time.time()
    for i, r in enumerate(rows):
        for va, vb in PAIRS:
            items = [(v, emb.read(v, [r[v]], m.base_dir)[0]) for v in (va, vb)]
            z = {v: emb.embed_raw(v, [raw])[0] for v, raw in items}
            variants = [None] + (
                [{"text": "occlusion", "image": "ig"}] if (va, vb) == ("text", "image") else []
            )
            for methods in variants:
                t = time.time()
                ex = explain_pair(emb, items[0], items[1], methods=methods)
                for side, other in zip(ex.sides, (vb, va)):
                    key = f"{side.column} ({side.method})"
                    secs.setdefault(key, []).append((time.time() - t) / 2)
                    d = deletion(emb, side, z[other], frac=0.1)
                    rec = dels.setdefault(key, {"top": [], "random": [], "k": [], "n": []})
                    rec["top"].append(d.top_drop)
                    rec["random"].append(d.random_drop)
                    rec["k"].append(d.k)
                    rec["n"].append(len(side.labels))
                    if side.completeness_gap is not None:
                        gaps.setdefault(key, []).append(side.completeness_gap / max(abs(ex.score), 1e-9))
        print(f"pair {i + 1}/{len(rows)} ({time.time() - t_all:.0f} s)", flush=True)
    # Pointing game.
    multi = [r for r in test if len(r.get("objects") or []) >= 2]
    phrases = [(r, o) for r in multi for o in r["objects"]]
    phrases = rng.sample(phrases, min(a.phrases, len(phrases)))
    hits, chance_obj, point_ig = 0, [], 0
    for r, o in phrases:
        obj = SceneObject(o["shape"], o["color"], o["size"], tuple(o["cell"]))
        zt = emb.embed_raw("text", [caption_en([obj])])[0]
        img = emb.read("image", [r["image"]], m.base_dir)[0]
        side = explain_side(emb, "image", img, zt, grid=3)
        hits += top_cell(side) == obj.cell
        if len(chance_obj) < a.ig_phrases:
            point_ig += top_cell(explain_side(emb, "image", img, zt, method="ig", grid=3)) == obj.cell
        chance_obj.append(1 / len(r["objects"]))
    # Planted cell, harder than the unit test: the object alone on a plain background, matched against
    # another rendering of it (other jitter and noise), not against itself.
    from crossalign.datasets.scenes.render import render
    from crossalign.datasets.scenes.scene import POSITIONS
    from crossalign.explain.units import make_units, remove_units

    planted, n_planted = 0, 0
    for i, cell in enumerate(sorted(POSITIONS)):
        for shape, color in (("circle", "red"), ("star", "blue")):
            obj = [SceneObject(shape, color, "large", cell)]
            u = make_units("image", render(obj, random.Random(f"q{i}{shape}")), grid=3, size=224)
            keep = cell[0] * 3 + cell[1]
            query = u.to_raw(remove_units(u, np.array([j for j in range(u.n) if j != keep])))[0]
            target = emb.embed_raw("image", [render(obj, random.Random(f"r{i}{shape}"))])[0]
            planted += top_cell(explain_side(emb, "image", query, target, grid=3)) == cell
            n_planted += 1
    res = {
        "run": a.run,
        "pairs": len(rows),
        "frac": 0.1,
        "deletion": {
            k: {
                "top_drop": float(np.mean(v["top"])),
                "random_drop": float(np.mean(v["random"])),
                "ratio": float(np.mean(v["top"]) / max(np.mean(v["random"]), 1e-9)),
                "units_removed": float(np.mean(v["k"])),
                "units": float(np.mean(v["n"])),
                "seconds_per_side": float(np.mean(secs[k])),
            }
            for k, v in dels.items()
        },
        "pointing": {
            "phrases": len(phrases),
            "occlusion": hits / max(1, len(phrases)),
            "ig": point_ig / max(1, min(a.ig_phrases, len(phrases))),
                     "ig_phrases": min(a.ig_phrases, len(phrases)),
            "chance_cell": 1 / 9,
            "chance_object": float(np.mean(chance_obj)),
        },
        "planted_cell_vs_other_rendering": planted / n_planted,
        "completeness_gap_rel": {
            k: {"mean": float(np.mean(v)), "max": float(np.max(v))} for k, v in gaps.items()
        },
        "seconds": round(time.time() - t_all, 1),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print("\n| side (method) | units | removed | drop, top 10 % | drop, random 10 % | ratio | s/side |")
    print("|---|---|---|---|---|---|---|")
    for k, v in res["deletion"].items():
        print(
            f"| {k} | {v['units']:.1f} | {v['units_removed']:.1f} | {v['top_drop']:.4f} | {v['random_drop']:.4f} | "
            f"{v['ratio']:.1f}x | {v['seconds_per_side']:.1f} |"
        )
    p = res["pointing"]
    print(
        f"\npointing game ({p['phrases']} phrases, 3x3 cells): occlusion {p['occlusion']:.3f}, ig {p['ig']:.3f}; "
        f"chance {p['chance_cell']:.3f} (cell) / {p['chance_object']:.3f} (object)"
    )
    print(f"planted image cell vs another rendering of the object: {res['planted_cell_vs_other_rendering']:.3f}")
    for k, v in res["completeness_gap_rel"].items():
        print(
            f"IG completeness gap {k}: mean {100 * v['mean']:.3f} % of the score, max {100 * v['max']:.3f} %"
        )
    print(f"load average before {load_before}, after {res['load_avg_after']}; {res['seconds']} s")


if __name__ == "__main__":
    main()
