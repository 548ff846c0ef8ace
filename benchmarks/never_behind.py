"""crossalign vs every tuned baseline, per direction, on the real sets (and any manifest).

For each set: make the data if needed (`crossalign data make`), choose encoders as the CLI does,
encode once (cached), then `benchmark` with N seeds: crossalign (candidates chosen on validation:
closed form, fine-tuned from it, from scratch) and the baselines tuned on validation, all scored on
the test split. Prints per-direction R@1 (mean ± sd) and the gap to the best baseline; writes JSON
with the machine's load average (the machine is shared: ratios within one run are what count).

    python benchmarks/never_behind.py --sets cedict,ucr --seeds 3 --out benchmarks/results/never_behind.json
    python benchmarks/never_behind.py --data /tmp/rd/data --sets cedict --epochs 15
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

SETS: dict[str, list[str]] = {"cedict": ["text_zh", "text"], "emoji": ["image", "text", "text_zh", "audio"],
                              "ucr": ["sensor", "text"]}


def run_set(name: str, data: Path, out: Path, seeds: int, epochs: int | None, methods: list[str] | None) -> dict:
    from crossalign.config import RunConfig
    from crossalign.datasets.registry import make_dataset
    from crossalign.recipes.benchmark import benchmark, directions
    from crossalign.evaluate.report import methods_table, print_tables, winner_line
    from crossalign.recipes.align import prepare_features

    if not (data / "manifest.jsonl").exists():
        make_dataset(name, data, progress=True)
    cols = SETS[name]
    train: dict = {"data": str(data), "progress": False}
    if epochs:
        train["epochs"] = epochs
    cfg = RunConfig.from_dict({"model": {"views": [{"column": c} for c in cols]}, "train": train})
    t0 = time.perf_counter()
    table, _ = prepare_features(cfg, progress=True)
    t_feat = time.perf_counter() - t0
    res = benchmark(cfg, out / name, table=table, progress=True, methods=methods, seeds=seeds)
    t_all = time.perf_counter() - t0
    wins = json.loads((out / name / "train_results.json").read_text())
    print_tables(methods_table(res, directions(cols), caption="; ".join(winner_line(w) for w in wins.values())))
    dirs = directions(cols)
    gap = {}
    for d in dirs:
        base = {m: r[f"{d}/R@1"] for m, r in res.items() if m not in ("crossalign", "random") and f"{d}/R@1" in r}
        best = max(base, key=lambda m: base[m])
        gap[d] = {"crossalign": res["crossalign"][f"{d}/R@1"], "best_baseline": best, "best": base[best],
                  "gap": res["crossalign"][f"{d}/R@1"] - base[best], "target_met": res["crossalign"][f"{d}/R@1"] >= base[best] - 0.01}
    for d, g in gap.items():
        print(f"{d:>24}: crossalign {g['crossalign']:.3f}  best baseline {g['best_baseline']} {g['best']:.3f}  "
              f"gap {g['gap']:+.3f}  {'met' if g['target_met'] else 'NOT met'}")
    return {"columns": cols, "n_train": len(table.split("train")), "n_val": len(table.split("val")),
            "n_test": len(table.split("test")), "seeds": seeds, "epochs": cfg.train.epochs, "results": res,
            "gap": gap, "winners": wins, "seconds": {"features": t_feat, "total": t_all}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="cedict,emoji,ucr")
    ap.add_argument("--data", type=Path, default=Path("runs/data"), help="folder holding one folder per set")
    ap.add_argument("--work", type=Path, default=Path("runs/never_behind"))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--methods", default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    results = {}
    for name in a.sets.split(","):
        results[name] = run_set(name, a.data / name, a.work, a.seeds, a.epochs,
                                a.methods.split(",") if a.methods else None)
        results[name]["load_average"] = os.getloadavg()
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            old = json.loads(a.out.read_text()) if a.out.exists() else {}
            a.out.write_text(json.dumps(old | {name: results[name]}, indent=2))


if __name__ == "__main__":
    main()
