"""ONNX export benchmark: onnxruntime vs torch throughput per view on this CPU, plus parity.

For every view of a run, the exported `<view>.onnx` (tower + head, or the head on features) and the
torch module it was traced from run on the same input tensors (preprocessing excluded on both
sides), at batch 1 and batch 32, with the same thread count. Torch and onnxruntime alternate
repeat by repeat and each keeps its best time, so load from other processes on a shared machine
falls on both alike. Also the max abs difference of their outputs.

    python benchmarks/export.py --run RUN --out benchmarks/results/export.json
    python benchmarks/export.py            # trains a small scenes run first (80 scenes, 3 epochs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def small_run(root: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from conftest import small_config  # the test suite's tiny run: image, text, audio, sensor

    from crossalign.datasets.registry import make_dataset
    from crossalign.recipes.align import train

    make_dataset("scenes", root / "data", n=80, seed=3)
    run, _ = train(small_config(root / "data", root / "run"), resume=False, progress=False)
    return run


def batch_of(plan: Any, n: int) -> tuple[torch.Tensor, ...]:
    """The plan's example inputs tiled to batch n (text: the same sentences, padded alike)."""
    return tuple(t.repeat(-(-n // t.shape[0]), *([1] * (t.dim() - 1)))[:n] for t in plan.example)


def best_of(fn: Any, repeats: int) -> float:
    fn()  # warm-up: allocations, lazy initialisation
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="run folder (default: train a small one)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/export.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from crossalign.export.onnx import export_onnx, onnx_session, run_onnx
    from crossalign.export.views import load_for_export, plan_views

    tmp = Path(tempfile.mkdtemp(prefix="crossalign-export-bench-"))
    run = args.run or small_run(tmp)
    model, cfg = load_for_export(run)
    infos = {i["column"]: i for i in export_onnx(model, tmp / "onnx")}
    rows = []
    for plan in plan_views(model):
        sess = onnx_session(tmp / "onnx" / infos[plan.column]["file"], threads=args.threads)
        for n in [int(b) for b in args.batches.split(",")]:
            x = batch_of(plan, n)
            feed = {k: t.numpy() for k, t in zip(plan.inputs, x)}
            with torch.inference_mode():
                ref = plan.module(*x).numpy()
                got = run_onnx(sess, feed)
                t_torch, t_ort = float("inf"), float("inf")
                for _ in range(args.repeats):  # alternate, keep each side's best
                    t_torch = min(t_torch, best_of(lambda: plan.module(*x), 1))
                    t_ort = min(t_ort, best_of(lambda: run_onnx(sess, feed), 1))
            rows.append({"view": plan.column, "kind": plan.kind, "batch": n,
                         "torch_items_per_s": n / t_torch, "onnxruntime_items_per_s": n / t_ort,
                         "speedup": t_torch / t_ort, "max_abs_diff": float(np.abs(got - ref).max())})
            r = rows[-1]
            print(f"{r['view']:>8} {r['kind']:>13} b={n:<3} torch {r['torch_items_per_s']:9.1f}/s  "
                  f"onnxruntime {r['onnxruntime_items_per_s']:9.1f}/s  x{r['speedup']:.2f}  diff {r['max_abs_diff']:.1e}")
    load = os.getloadavg()
    result = {"run": str(run), "threads": args.threads, "repeats": args.repeats, "opset": 17,
              "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_average_1_5_15": [round(v, 2) for v in load], "rows": rows,
              "command": "python benchmarks/export.py" + (f" --run {args.run}" if args.run else "")}
    print("\n| view | exported | batch | torch items/s | onnxruntime items/s | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['view']} | {r['kind']} | {r['batch']} | {r['torch_items_per_s']:.1f} | "
              f"{r['onnxruntime_items_per_s']:.1f} | {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    print(f"\nload average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
