"""Routing with the hubness correction in view (`train/route_csls.py`) against the run as it was saved
(routing on plain cosine, stop 26), on the same trained joint models: test R@1 per direction, mean
over the runs given.

Each RUN is a supervised run folder (`crossalign demo`'s `runs/demo/run`, or `crossalign benchmark`'s
`.../seedS/run`) trained before stop 27. Modes: "saved" scores the run's model as it is; "plain" and
"csls" drop its routes and correction and route its joint model again with the current code, as
`train` does after training, scoring candidates on plain cosine ("plain") or each with its best CSLS
correction ("csls", the default now); the routed model is then corrected by `train.hubness: auto`.
Validation chooses everything; test is read only to score.

    python benchmarks/route_csls.py runs/demo/run --name scenes --out benchmarks/results/route_csls_scenes.json
    python benchmarks/route_csls.py --merge A.json B.json --name emoji --out ...   # runs measured apart
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("runs", nargs="+", type=Path, help="run folders (or, with --merge, JSON files of earlier calls)")
ap.add_argument("--merge", action="store_true", help="aggregate the runs of earlier calls' JSON instead of measuring")
ap.add_argument("--name", default="", help="label of the data set in the output")
ap.add_argument("--data", default=None, help="manifest (default: the one each run was trained on)")
ap.add_argument("--baselines", type=Path, default=None,
                help="a benchmarks/baselines_csls.py JSON of the same runs: the best baseline, plain or + CSLS, per direction")
ap.add_argument("--modes", default="saved,csls", help="comma-separated: saved, plain, csls (first = reference)")
ap.add_argument("--out", type=Path, required=True)
a = ap.parse_args()

from crossalign.align.io import load_run
from crossalign.evaluate.run_eval import evaluate_model, load_table
from crossalign.train.hubness import choose_hubness, hub_model
from crossalign.train.routing import choose_routes, joint_model, pair_closed_forms, routed_model


def directions(metrics: dict[str, float]) -> dict[str, float]:
    return {k.removesuffix("/R@1"): v for k, v in metrics.items()
            if k.endswith("/R@1") and "->" in k and not k.startswith("mean")}


modes = a.modes.split(",")
per_run: list[dict] = []
for src in a.runs if a.merge else []:
    per_run += json.loads(src.read_text())["runs"]
for run in [] if a.merge else a.runs:
    saved, cfg_saved = load_run(run)
    joint, cfg = joint_model(saved, cfg_saved)
    table = load_table(cfg, a.data)
    tr, va = table.split(cfg.train.train_split), table.split(cfg.train.val_split)
    res: dict = {"run": str(run)}
    for mode in modes:
        t0 = time.perf_counter()
        if mode == "saved":
            model, c = saved, cfg_saved
            rec = json.loads((run / "train_result.json").read_text())
            routes = {k: r["chosen"] for k, r in (rec.get("routes") or {}).items()}
            csls = {k: r["chosen"] for k, r in (rec.get("hubness") or {}).items()}
        else:
            c = copy.deepcopy(cfg)  # what `train` fits for this mode (recipes/align.py)
            c.train.hubness = "auto" if mode == "csls" else "off"
            choice = choose_routes(joint, cfg, tr, va, seed=cfg.train.seed, closed_forms=pair_closed_forms(c),
                                   hubness=mode == "csls")
            model, c = routed_model(joint, cfg, choice) if choice.routes else (joint, cfg)
            hub = choose_hubness(model, tr, va, seed=cfg.train.seed)
            if hub.hubness:
                model, c = hub_model(model, c, hub)
            routes = {k: r["chosen"] for k, r in choice.report.items()}
            csls = {k: r["chosen"] for k, r in hub.report.items()}
        secs = time.perf_counter() - t0
        test = directions(evaluate_model(model, c, table, "test", evaluators=("retrieval",)).metrics)
        res[mode] = {"test": test, "mean": statistics.fmean(test.values()), "seconds": round(secs, 1),
                     "routes": routes, "csls": csls}
        print(f"{run} {mode}: test mean {res[mode]['mean']:.4f} ({secs:.0f} s); routes "
              + ", ".join(f"{k} {v}+{csls.get(k, 'off')}" for k, v in routes.items()), flush=True)
    per_run.append(res)

ref, new = modes[0], modes[-1]
dirs = list(per_run[0][ref]["test"])
best = {}
if a.baselines is not None:
    # the stronger of each direction's best plain and best corrected baseline (as baselines_csls.py's gap)
    best = {d: max(r["best_plain"], r["best_csls"], key=lambda x: x[1])
            for d, r in json.loads(a.baselines.read_text())["rows"].items()}
rows = {}
print(f"\n{a.name}: test R@1, mean over {len(per_run)} runs ({ref} -> {new})")
for d in dirs:
    rows[d] = {m: statistics.fmean(r[m]["test"][d] for r in per_run) for m in modes}
    p, h = rows[d][ref], rows[d][new]
    rows[d]["delta"] = h - p
    extra = ""
    if d in best:
        rows[d]["best_baseline"] = best[d]
        extra = f"  best baseline {best[d][0]} {best[d][1]:.3f}  gap {h - best[d][1]:+.3f}"
    print(f"{d:>18}: {p:.3f} -> {h:.3f} ({h - p:+.3f}){extra}")
means = {m: statistics.fmean(r[m]["mean"] for r in per_run) for m in modes}
sds = {m: statistics.stdev([r[m]["mean"] for r in per_run]) if len(per_run) > 1 else 0.0 for m in modes}
print(f"{'mean':>18}: " + " -> ".join(f"{means[m]:.3f} ± {sds[m]:.3f} ({m})" for m in modes))
behind = [d for d, r in rows.items() if "best_baseline" in r and r[new] < r["best_baseline"][1] - 0.01]
print(f"directions more than 0.01 behind the best baseline (plain or + CSLS): {behind or 'none'}")
a.out.write_text(json.dumps({"command": "python benchmarks/route_csls.py " + " ".join(sys.argv[1:]),
                             "name": a.name, "rows": rows, "means": means, "sd": sds, "behind_0.01": behind,
                             "runs": per_run, "load_average": list(os.getloadavg())}, indent=1) + "\n")
print(f"wrote {a.out}")
