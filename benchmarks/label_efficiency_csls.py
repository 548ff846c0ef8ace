"""The label-efficiency baselines with and without the hubness correction (CSLS chosen on validation),
on exactly the pairs `benchmarks/label_efficiency.py` gives them: is the semi-supervised model's lead
over the best baseline at F pairs a lead over a corrected baseline too?

    python benchmarks/label_efficiency_csls.py --data /tmp/demo/data --fraction 0.1 --seeds 0,1,2 \\
        --out benchmarks/results/label_efficiency_csls.json

Crossalign's figures are not re-trained here: compare with `label_efficiency.json` (same data, seeds
and fraction).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from label_efficiency import BASELINES, _config  # the same baselines and config

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--data", required=True)
ap.add_argument("--fraction", type=float, default=0.1)
ap.add_argument("--seeds", default="0,1,2")
ap.add_argument("--out", type=Path, required=True)
a = ap.parse_args()

from crossalign.evaluate.baselines import run_baselines
from crossalign.recipes.align import prepare_features
from crossalign.recipes.semi import apply_fraction
from crossalign.semi.data import SemiData, Unpaired

out: dict[str, dict[str, list[float]]] = {"plain": {}, "csls": {}}
t0 = time.time()
for seed in [int(s) for s in a.seeds.split(",")]:
    cfg = _config(Path(a.data), Path("/tmp/le_csls_unused"), 1, seed)
    table, _ = prepare_features(cfg, progress=False)
    sd = apply_fraction(SemiData(table, Unpaired()), a.fraction, cfg)
    for mode in ("plain", "csls"):
        res = run_baselines(sd.table, cfg.model.columns, methods=BASELINES, seed=seed, hubness=mode == "csls")
        for m, met in res.items():
            out[mode].setdefault(m, []).append(met["mean/R@1"])
    print(f"seed {seed}: " + "  ".join(f"{m} {out['plain'][m][-1]:.3f} -> {out['csls'][m][-1]:.3f}"
                                       for m in out["plain"]), flush=True)
print(f"\n{100 * a.fraction:g} % pairs, test mean R@1 (mean ± sd over seeds)")
print("| baseline | plain | + CSLS |")
print("|---|---|---|")
for m in out["plain"]:
    p, c = out["plain"][m], out["csls"][m]
    sd_ = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
    print(f"| {m} | {statistics.fmean(p):.3f} ± {sd_(p):.3f} | {statistics.fmean(c):.3f} ± {sd_(c):.3f} |")
a.out.parent.mkdir(parents=True, exist_ok=True)
a.out.write_text(json.dumps({"command": "python benchmarks/label_efficiency_csls.py " + " ".join(sys.argv[1:]),
                             "fraction": a.fraction, "results": out, "seconds": round(time.time() - t0, 1),
                             "load_average": list(os.getloadavg())}, indent=2))
print(f"wrote {a.out}")
