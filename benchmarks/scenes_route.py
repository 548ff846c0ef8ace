"""The demo's model with per-pair routing (`train.route: auto`, the default) against every tuned baseline,
per direction, on the demo's data, config and seed. Makes the data like `crossalign demo` when missing.

    python benchmarks/scenes_route.py            # -> benchmarks/results/scenes_route.json
"""
import argparse
import copy
import json
import os
import time
from pathlib import Path

from crossalign.align.io import load_run
from crossalign.config import RunConfig
from crossalign.datasets.registry import make_dataset
from crossalign.evaluate.baselines import run_baselines
from crossalign.evaluate.run_eval import evaluate_model
from crossalign.recipes.align import prepare_features, train
from crossalign.recipes.benchmark import directions
from crossalign.recipes.demo import DEMO_CONFIG

ap = argparse.ArgumentParser()
ap.add_argument("--root", type=Path, default=Path("runs/demo"))
ap.add_argument("--out", type=Path, default=Path("benchmarks/results/scenes_route.json"))
ap.add_argument("--methods", default="cca,kcca,ridge,procrustes,asif")
a = ap.parse_args()
if not (a.root / "data" / "manifest.jsonl").exists():
    make_dataset("scenes", a.root / "data", n=2000, seed=0, progress=True)
cfg = RunConfig.from_dict(copy.deepcopy(DEMO_CONFIG))
cfg.train.data, cfg.train.out = str(a.root / "data"), str(a.root / "route")
table, _ = prepare_features(cfg, progress=False)
t = time.time()
run, res = train(cfg, resume=False, table=table, progress=False)
t_train = time.time() - t
model, cfg2 = load_run(run)
ours = evaluate_model(model, cfg2, table, "test", prompt="a {}").metrics
base = run_baselines(table, cfg.model.columns, methods=a.methods.split(","), seed=0)
tr = json.loads((run / "train_result.json").read_text())
rows = {}
for d in directions(cfg.model.columns):
    k = f"{d}/R@1"
    best = max(base, key=lambda m: base[m][k])
    rows[d] = {"crossalign": ours[k], "best_baseline": best, "best": base[best], "gap": ours[k] - base[best],
               **{m: base[m][k] for m in base}}
    print(f"{d:>16}: crossalign {ours[k]:.3f}  best {best} {base[best]:.3f}  gap {ours[k] - base[best]:+.3f}")
print(f"mean: crossalign {ours['mean/R@1']:.3f}; " + ", ".join(f"{m} {base[m]['mean/R@1']:.3f}" for m in base))
out = {"train_s": t_train, "route_s": tr.get("route_s"), "winner": tr["winner"], "routed": tr.get("routed"),
       "routes": {k: {"chosen": v["chosen"], "val": {m: v["val"][m]["R@1"] for m in v["val"]}}
                  for k, v in (tr.get("routes") or {}).items()},
       "candidates": tr["candidates"], "directions": rows, "mean": {"crossalign": ours["mean/R@1"],
                                                                 **{m: base[m]["mean/R@1"] for m in base}},
       "n_test": len(table.split("test")), "load_average": list(os.getloadavg()),
       "command": "python benchmarks/scenes_route.py"}
a.out.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {a.out}; train {t_train:.0f} s (routing {tr.get('route_s')} s); load {os.getloadavg()}")
