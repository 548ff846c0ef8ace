"""Per-pair routing with and without score-level mixtures, on the same trained joint models, per
direction against every tuned baseline of the same benchmark (test R@1, mean over the runs given).

Each RUN is a run folder written by `crossalign benchmark` (its `benchmark.json` one level up) or
`crossalign demo` (`benchmark.json` inside). The run's joint model (routes dropped if it was routed) is
routed afresh: once among single candidates (`train.route: single`) and once with mixtures (`train.route: auto`), from the same
fitted candidates, so the two differ only by the mixtures. The test split is read only to score.

    python benchmarks/route_mix.py runs/bench-emoji/seed*/run --out benchmarks/results/route_mix_emoji.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("runs", nargs="+", type=Path)
ap.add_argument("--name", default="", help="label of the data set in the output")
ap.add_argument("--out", type=Path, required=True)
a = ap.parse_args()

from crossalign.align.io import load_run
from crossalign.evaluate.run_eval import evaluate_model, load_table
from crossalign.train.routing import RouteChoice, choose_routes, joint_model, routed_model

MODES = ("joint", "single", "mix")
per_run: list[dict] = []
for run in a.runs:
    joint, cfg = joint_model(*load_run(run))
    table = load_table(cfg)
    tr, va = table.split("train"), table.split("val")
    again = len(cfg.model.columns) > 2 or cfg.train.start == "scratch"
    t0 = time.perf_counter()
    single = RouteChoice()
    mixed = choose_routes(joint, cfg, tr, va, seed=cfg.train.seed, closed_forms=again, single=single)
    route_s = time.perf_counter() - t0
    test: dict[str, dict[str, float]] = {}
    for mode, choice in (("joint", None), ("single", single), ("mix", mixed)):
        model, c = (joint, cfg) if choice is None or not choice.routes else routed_model(joint, cfg, choice)
        m = evaluate_model(model, c, table, "test", evaluators=("retrieval",)).metrics
        test[mode] = {k.removesuffix("/R@1"): v for k, v in m.items() if k.endswith("/R@1") and "->" in k
                      and not k.startswith("mean")}
    found = [p for p in (run / "benchmark.json", run.parent / "benchmark.json") if p.exists()]
    bench = json.loads(found[0].read_text())
    base = {meth: {d: bench[meth][f"{d}/R@1"] for d in test["mix"] if f"{d}/R@1" in bench[meth]}
            for meth in bench if meth not in ("crossalign", "random")}
    per_run.append({"run": str(run), "route_s": round(route_s, 1), "mix_s": round(mixed.mix_s, 1), "test": test,
                    "baselines": base,
                    "n_test": len(table.split("test")),
                    "routes": {k: {"single": single.report[k]["chosen"], "mix": r["chosen"], "val": r["val"]}
                               for k, r in mixed.report.items()}})
    print(f"{run}: routing {route_s:.0f} s; " + ", ".join(f"{k}: {r['chosen']}" for k, r in mixed.report.items()),
          flush=True)

dirs = list(per_run[0]["test"]["mix"])
methods = list(per_run[0]["baselines"])
n = per_run[0]["n_test"]
rows = {}
for d in dirs:
    mean = {m: statistics.fmean(r["test"][m][d] for r in per_run) for m in MODES}
    sd = {m: statistics.stdev([r["test"][m][d] for r in per_run]) if len(per_run) > 1 else 0.0 for m in MODES}
    base = {m: statistics.fmean(r["baselines"][m][d] for r in per_run) for m in methods}
    best = max(base, key=lambda k: base[k])
    rows[d] = {**{m: mean[m] for m in MODES}, "sd": sd, **base, "best_baseline": best, "best": base[best],
               "gap_single": mean["single"] - base[best], "gap_mix": mean["mix"] - base[best],
               "test_sd": (mean["mix"] * (1 - mean["mix"]) / n) ** 0.5}
hdr = (f"{'direction':>18} | " + " | ".join(f"{m:>6}" for m in MODES + tuple(methods))
       + " | best      | gap single | gap mix")
print(f"\n{a.name or a.runs[0]}: {len(per_run)} runs, test R@1 (mean over runs)\n{hdr}")
for d, r in rows.items():
    print(f"{d:>18} | " + " | ".join(f"{r[m]:6.3f}" for m in MODES + tuple(methods))
          + f" | {r['best_baseline']:>5} {r['best']:.3f} | {r['gap_single']:+10.3f} | {r['gap_mix']:+.3f}")
means = {m: statistics.fmean(r[m] for r in rows.values()) for m in MODES + tuple(methods)}
print(f"{'mean':>18} | " + " | ".join(f"{means[m]:6.3f}" for m in MODES + tuple(methods)))
out = {"name": a.name, "runs": per_run, "directions": rows, "mean": means,
       "behind_0.01": {m: [d for d, r in rows.items() if r[f"gap_{m}"] < -0.01] for m in ("single", "mix")},
       "load_average": list(os.getloadavg())}
a.out.write_text(json.dumps(out, indent=1) + "\n")
print(f"more than 0.01 behind the best baseline: single {out['behind_0.01']['single']}; "
      f"mix {out['behind_0.01']['mix']}; load average {out['load_average']}; wrote {a.out}")
