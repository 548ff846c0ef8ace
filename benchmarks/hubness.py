"""Hubness correction (`train.hubness: auto`, CSLS per pair) on and off, on the same trained models:
test R@1 per direction, mean over the runs given, beside the tuned baselines of the same benchmark.

Each RUN is a supervised run folder (`crossalign demo`'s `runs/demo/run`, or `crossalign benchmark`'s
`.../seedS/run`). Its model without the correction is scored as is ("off"), then corrected as
`train` does (chosen on the validation split, banks from the train split) and scored again. The test
split is read only to score.

    python benchmarks/hubness.py runs/demo/run --name scenes --out benchmarks/results/hubness_scenes.json
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
ap.add_argument("--data", default=None, help="manifest (default: the one each run was trained on)")
ap.add_argument("--out", type=Path, required=True)
a = ap.parse_args()

from crossalign.align.io import load_run
from crossalign.evaluate.run_eval import evaluate_model, load_table
from crossalign.train.hubness import choose_hubness, hub_model, unhubbed


def one_item_ms(model, feats, reps: int = 40) -> float:  # type: ignore[no-untyped-def]
    """Median milliseconds to embed one item (what `serve` does per single request), over the views."""
    import numpy as np
    import torch

    times = []
    with torch.inference_mode():
        for c, f in feats.items():
            x = torch.from_numpy(np.asarray(f[:1]))
            model.embed(c, x)  # warm-up (and the float32 copy of a float16 bank)
            for _ in range(reps):
                t0 = time.perf_counter()
                model.embed(c, x)
                times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def directions(metrics: dict[str, float]) -> dict[str, float]:
    return {k.removesuffix("/R@1"): v for k, v in metrics.items()
            if k.endswith("/R@1") and "->" in k and not k.startswith("mean")}


per_run: list[dict] = []
for run in a.runs:
    model, cfg = unhubbed(*load_run(run))
    table = load_table(cfg, a.data)
    t0 = time.perf_counter()
    choice = choose_hubness(model, table.split(cfg.train.train_split), table.split(cfg.train.val_split),
                            seed=cfg.train.seed)
    fit_s = time.perf_counter() - t0
    test = {"off": directions(evaluate_model(model, cfg, table, "test", evaluators=("retrieval",)).metrics)}
    on = hub_model(model, cfg, choice) if choice.hubness else (model, cfg)
    test["on"] = directions(evaluate_model(*on, table, "test", evaluators=("retrieval",)).metrics)
    te = table.split("test")
    feats = {c: te.features[c] for c in cfg.model.columns if c in te.features}
    ms = {"off": round(one_item_ms(model, feats), 3), "on": round(one_item_ms(on[0], feats), 3)}
    hub = on[0].hub
    bank_mb = sum(b.numel() * b.element_size() for b in hub.buffers()) / 2**20 if hub is not None else 0.0  # stored
    found = [p for p in (run / "benchmark.json", run.parent / "benchmark.json") if p.exists()]
    bench = json.loads(found[0].read_text()) if found else {}
    base = {m: {d: bench[m][f"{d}/R@1"] for d in test["on"] if f"{d}/R@1" in bench[m]}
            for m in bench if m not in ("crossalign", "random")}
    per_run.append({"run": str(run), "fit_s": round(fit_s, 1), "test": test, "baselines": base,
                    "n_test": len(table.split("test")), "bank_MiB": round(bank_mb, 1), "one_item_ms": ms,
                    "chosen": {k: {"chosen": r["chosen"], "val_gain": r["gain"]} for k, r in choice.report.items()}})
    print(f"{run}: {fit_s:.1f} s, banks {bank_mb:.1f} MiB, one item {ms['off']:.2f} -> {ms['on']:.2f} ms; " + ", ".join(f"{k}: {r['chosen']} ({r['gain']:+.3f})"
                                                for k, r in choice.report.items()), flush=True)

dirs = list(per_run[0]["test"]["on"])
methods = sorted({m for r in per_run for m in r["baselines"]})


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


rows = {}
for d in dirs + ["mean"]:
    def get(r: dict, mode: str, d: str = d) -> float:
        t = r["test"][mode]
        return statistics.fmean(t.values()) if d == "mean" else t[d]

    rows[d] = {mode: mean([get(r, mode) for r in per_run]) for mode in ("off", "on")}
    for m in methods:
        vals = [statistics.fmean(r["baselines"][m].values()) if d == "mean" else r["baselines"][m].get(d)
                for r in per_run if m in r["baselines"]]
        rows[d][m] = mean([v for v in vals if v is not None])
sd = {mode: statistics.stdev([statistics.fmean(r["test"][mode].values()) for r in per_run]) if len(per_run) > 1 else 0.0
      for mode in ("off", "on")}
print(f"\n{a.name or 'runs'}: test R@1, mean over {len(per_run)} run(s)")
print("| direction | off | **on** | " + " | ".join(methods) + " |")
print("|---|---|---|" + "---|" * len(methods))
for d, r in rows.items():
    print(f"| {d} | {r['off']:.3f} | **{r['on']:.3f}** | " + " | ".join(f"{r[m]:.3f}" for m in methods) + " |")
if len(per_run) > 1:
    print(f"mean ± sd over runs: off {rows['mean']['off']:.3f} ± {sd['off']:.3f}, on {rows['mean']['on']:.3f} ± {sd['on']:.3f}")
a.out.parent.mkdir(parents=True, exist_ok=True)
a.out.write_text(json.dumps({"command": "python benchmarks/hubness.py " + " ".join(os.sys.argv[1:]),
                             "name": a.name, "rows": rows, "sd": sd, "runs": per_run,
                             "load_average": list(os.getloadavg())}, indent=2))
print(f"wrote {a.out}")
