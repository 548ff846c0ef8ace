"""Test R@1 per direction of trained (routed) run folders against the tuned baselines already in a
`real.py` results file: a quick reading while the baseline phase of `real.py` is still running (the
baselines are deterministic given the splits, except kernel CCA's seeded landmarks: their mean over
seeds is used). `real.py` itself gives the authoritative table when it finishes.

    python benchmarks/route_eval.py emoji runs/real-e6/runs/emoji-seed*/run --out benchmarks/results/route_eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("set")
ap.add_argument("runs", nargs="+", type=Path)
ap.add_argument("--baselines", type=Path, default=Path("benchmarks/results/real.json"))
ap.add_argument("--out", type=Path, default=Path("benchmarks/results/route_eval.json"))
a = ap.parse_args()

from crossalign.align.io import load_run  # noqa: E402
from crossalign.evaluate.run_eval import evaluate_model, load_table  # noqa: E402

saved = json.loads(a.baselines.read_text())[a.set]
dirs = list(saved["directions"])
methods = [m for m in next(iter(saved["directions"].values())) if m not in ("crossalign", "random")]
table = None
per_run, routes = [], {}
for run in a.runs:
    if not (run / "train_result.json").exists():
        continue
    model, cfg = load_run(run)
    table = table or load_table(cfg)
    m = evaluate_model(model, cfg, table, "test", evaluators=("retrieval",)).metrics
    per_run.append({d: m[f"{d}/R@1"] for d in dirs})
    tr = json.loads((run / "train_result.json").read_text())
    routes[str(run)] = {"winner": tr["winner"], "route_s": tr.get("route_s"),
                        "pairs": {k: v["chosen"] for k, v in (tr.get("routes") or {}).items()}}
rows = {}
print(f"{a.set}: {len(per_run)} runs; test R@1 mean ± sd over runs vs baselines from {a.baselines}")
for d in dirs:
    vals = [r[d] for r in per_run]
    base = {m: saved["directions"][d][m]["mean"] for m in methods}
    best = max(base, key=lambda k: base[k])
    mean, sd = statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0
    n = int(saved["n_test"])
    rows[d] = {"crossalign": mean, "sd": sd, "values": vals, "best_baseline": best, "best": base[best],
               "gap": mean - base[best], "test_sd": (mean * (1 - mean) / n) ** 0.5, **base}
    print(f"{d:>16}: {mean:.3f} ± {sd:.3f}  best {best} {base[best]:.3f}  gap {mean - base[best]:+.3f}")
mean_all = statistics.fmean(statistics.fmean(r.values()) for r in per_run)
print(f"mean: {mean_all:.3f}; " + ", ".join(f"{m} {saved['mean'][m]['mean']:.3f}" for m in methods))
out = {"set": a.set, "runs": routes, "directions": rows, "mean": mean_all,
       "baseline_means": {m: saved["mean"][m]["mean"] for m in methods},
       "behind_0.01": [d for d, r in rows.items() if r["gap"] < -0.01], "load_average": list(os.getloadavg())}
a.out.write_text(json.dumps(out, indent=1) + "\n")
print(f"directions more than 0.01 behind the best baseline: {out['behind_0.01']}; wrote {a.out}")
