"""The federated scenes results over seeds against their references, from the JSON files that
`federated.py` and `federated_pooled.py` wrote: no training here, only the table.

For each seed: the federation's test mean R@1 (routed, and its joint model alone when routing chose
other routes), the ratio to centralised training on the pooled cells the sites hold (epochs tuned on
validation, `federated_pooled.py`), and the best single site's own model against the federation on
that site's directions (`federated.py --stages singles`, whose single-site models do not change).

    python benchmarks/federated_summary.py --fed benchmarks/results/federated_seed{S}_routed.json ... \\
        --out benchmarks/results/federated_routed_summary.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SINGLES = {0: "benchmarks/results/federated.json", 1: "benchmarks/results/federated_seed1_rounds8.json",
           2: "benchmarks/results/federated_seed2_rounds8.json"}
POOLED = "benchmarks/results/federated_pooled_seed{seed}.json"


def _site_directions(views: list[str]) -> list[str]:
    return [f"{a}->{b}/R@1" for a in views for b in views if a != b]


def summarise(fed_file: str) -> dict[str, Any]:
    res = json.loads(Path(fed_file).read_text())
    seed = int(res.get("seed", 0))
    fed = res["fed"]
    pooled = json.loads(Path(POOLED.format(seed=seed)).read_text())["mean_R@1"]
    singles = json.loads(Path(SINGLES[seed]).read_text())["single_sites"]
    best = max(singles, key=lambda s: s["mean_R@1"])
    dirs = _site_directions(best["views"])

    def on(d: dict[str, float]) -> float:
        return sum(d[k] for k in dirs) / len(dirs)

    out = {"seed": seed, "file": fed_file, "fed_mean_R@1": fed["mean_R@1"], "pooled_cells_mean_R@1": pooled,
           "ratio_vs_pooled": fed["mean_R@1"] / pooled, "best_site": best["site"], "best_site_views": best["views"],
           "best_site_own": best["mean_R@1"], "fed_on_best_site_dirs": on(fed["directions"]),
           "routes": {k: r["chosen"] for k, r in ((fed.get("routing") or {}).get("routes") or {}).items()}}
    out["gain_over_best_site"] = out["fed_on_best_site_dirs"] - best["mean_R@1"]
    joint = fed.get("joint_only") or {}
    if joint:
        out.update({"joint_mean_R@1": joint["mean_R@1"], "joint_ratio_vs_pooled": joint["mean_R@1"] / pooled,
                    "joint_on_best_site_dirs": on(joint["directions"])})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fed", nargs="+", required=True, help="federated.py result files (one per seed)")
    ap.add_argument("--out", default="benchmarks/results/federated_routed_summary.json")
    args = ap.parse_args()
    rows = [summarise(f) for f in args.fed]
    print("| seed | federated (routed) | its joint model alone | pooled cells (val-tuned) | ratio (joint alone) "
          "| best site: own / federated on its directions (joint alone) | routes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        j = r.get("joint_mean_R@1", r["fed_mean_R@1"])
        print(f"| {r['seed']} | {r['fed_mean_R@1']:.3f} | {j:.3f} | {r['pooled_cells_mean_R@1']:.3f} "
              f"| {r['ratio_vs_pooled']:.2f}x ({r.get('joint_ratio_vs_pooled', r['ratio_vs_pooled']):.2f}x) "
              f"| {r['best_site_own']:.3f} / {r['fed_on_best_site_dirs']:.3f} "
              f"({r.get('joint_on_best_site_dirs', r['fed_on_best_site_dirs']):.3f}), {r['gain_over_best_site']:+.3f} "
              f"| {', '.join(f'{k}: {v}' for k, v in r['routes'].items())} |")
    n = len(rows)
    mean = {k: sum(r[k] for r in rows) / n for k in ("fed_mean_R@1", "ratio_vs_pooled", "gain_over_best_site")}
    print(f"mean over {n} seeds: federated {mean['fed_mean_R@1']:.3f}, {mean['ratio_vs_pooled']:.3f}x the pooled "
          f"cells, {mean['gain_over_best_site']:+.3f} over the best single site")
    Path(args.out).write_text(json.dumps({"seeds": rows, "mean": mean}, indent=2))


if __name__ == "__main__":
    main()
