"""Time `crossalign demo` cold (empty feature cache, no data) and warm (data and features cached).

Targets from the alignment issue: cold <= 5 min, warm <= 1 min on 2 CPU cores. Runs the real
command as subprocesses (the user's path) and prints a table; `--out` writes JSON.

    python benchmarks/demo.py --n 2000 --out benchmarks/results/demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    exe = str(Path(sys.executable).parent / "crossalign")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, CROSSALIGN_CACHE=f"{tmp}/cache", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        cmd = [exe, "demo", "--out", f"{tmp}/demo", "--n", str(a.n)] + (["--epochs", str(a.epochs)] if a.epochs else [])
        cold = run(cmd, env)
        stages_cold = json.loads(Path(f"{tmp}/demo/run/demo_times.json").read_text())
        warm = run(cmd, env)
        stages_warm = json.loads(Path(f"{tmp}/demo/run/demo_times.json").read_text())
        metrics = json.loads(Path(f"{tmp}/demo/run/metrics.json").read_text())
    res = {"n": a.n, "cold_s": cold, "warm_s": warm, "warm_over_cold": warm / cold, "cold_stages": stages_cold,
           "warm_stages": stages_warm, "mean_test_R@1": metrics["mean/R@1"], "cpu_count": os.cpu_count()}
    print(f"{'run':<6}{'total s':>9}{'make':>8}{'features':>10}{'train':>8}{'eval':>8}   target")
    for name, total, st, target in (("cold", cold, stages_cold, 300), ("warm", warm, stages_warm, 60)):
        print(f"{name:<6}{total:>9.1f}{st['make']:>8.1f}{st['features']:>10.1f}{st['train']:>8.1f}{st['eval']:>8.1f}"
              f"   <= {target} s: {'yes' if total <= target else 'NO'}")
    print(f"warm/cold ratio {warm / cold:.2f}; mean test R@1 {metrics['mean/R@1']:.3f}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
