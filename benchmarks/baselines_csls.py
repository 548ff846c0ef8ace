"""The baselines with and without the hubness correction crossalign gets (CSLS chosen on validation,
`evaluate/csls.py`), beside the trained runs: is crossalign still ahead when the baselines get it too?

Each RUN is a trained run folder (e.g. `runs/real/runs/emoji-seed{0,1,2}/run`); its own table and
splits are used, the baselines are fitted with the run's seed, and the run itself is scored on test.
Prints per direction: crossalign, the best plain baseline, the best corrected one, and the gap to
the better of the two; writes JSON.

    python benchmarks/baselines_csls.py runs/real/runs/emoji-seed{0,1,2}/run --name emoji \\
        --out benchmarks/results/baselines_csls_emoji.json
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
ap.add_argument("--name", default="")
ap.add_argument("--methods", default="cca,kcca,ridge,procrustes,encoder,asif")
ap.add_argument("--out", type=Path, required=True)
a = ap.parse_args()

from crossalign.align.io import load_run
from crossalign.evaluate.baselines import run_baselines
from crossalign.evaluate.run_eval import evaluate_model, load_table


def directions(metrics: dict[str, float]) -> dict[str, float]:
    return {k.removesuffix("/R@1"): v for k, v in metrics.items()
            if k.endswith("/R@1") and "->" in k and not k.startswith("mean")}


per_run = []
for run in a.runs:
    model, cfg = load_run(run)
    table = load_table(cfg)
    cols = cfg.model.columns
    t0 = time.perf_counter()
    sel: dict = {}
    res = {mode: run_baselines(table, cols, cfg.train.train_split, "test", a.methods.split(","), cfg.train.seed,
                               val_split=cfg.train.val_split, hubness=mode == "csls", selected=sel if mode == "csls" else None)
           for mode in ("plain", "csls")}
    own = directions(evaluate_model(model, cfg, table, "test", evaluators=("retrieval",)).metrics)
    per_run.append({"run": str(run), "crossalign": own, "seconds": round(time.perf_counter() - t0, 1),
                    "baselines": {mode: {m: directions(r) for m, r in rs.items()} for mode, rs in res.items()},
                    "csls_chosen": {m: {p: v.get("csls") for p, v in ps.items()} for m, ps in sel.items()}})
    print(f"{run}: {per_run[-1]['seconds']} s", flush=True)

dirs = list(per_run[0]["crossalign"])
rows = {}
for d in dirs:
    def best(mode: str, d: str = d) -> tuple[str, float]:
        ms = per_run[0]["baselines"][mode]
        vals = {m: statistics.fmean(r["baselines"][mode][m][d] for r in per_run) for m in ms if d in ms[m]}
        m = max(vals, key=vals.get)  # type: ignore[arg-type]
        return m, vals[m]

    ours = statistics.fmean(r["crossalign"][d] for r in per_run)
    (mp, vp), (mc, vc) = best("plain"), best("csls")
    rows[d] = {"crossalign": ours, "best_plain": [mp, vp], "best_csls": [mc, vc], "gap": ours - max(vp, vc)}
ours_mean = statistics.fmean(statistics.fmean(r["crossalign"].values()) for r in per_run)
print(f"\n{a.name or 'runs'}: test R@1, mean over {len(per_run)} run(s)")
print("| direction | crossalign | best plain baseline | best baseline + CSLS | crossalign - best |")
print("|---|---|---|---|---|")
for d, r in rows.items():
    print(f"| {d} | {r['crossalign']:.3f} | {r['best_plain'][0]} {r['best_plain'][1]:.3f} | "
          f"{r['best_csls'][0]} {r['best_csls'][1]:.3f} | {r['gap']:+.3f} |")
means = {mode: {m: statistics.fmean(statistics.fmean(r["baselines"][mode][m].values()) for r in per_run)
                for m in per_run[0]["baselines"][mode]} for mode in ("plain", "csls")}
print(f"| mean | {ours_mean:.3f} | " + " | ".join(
    f"{max(means[mo], key=means[mo].get)} {max(means[mo].values()):.3f}" for mo in ("plain", "csls")) + " | |")
a.out.parent.mkdir(parents=True, exist_ok=True)
a.out.write_text(json.dumps({"command": "python benchmarks/baselines_csls.py " + " ".join(os.sys.argv[1:]),
                             "name": a.name, "rows": rows, "means": means, "crossalign_mean": ours_mean,
                             "runs": per_run, "load_average": list(os.getloadavg())}, indent=2))
print(f"wrote {a.out}")
