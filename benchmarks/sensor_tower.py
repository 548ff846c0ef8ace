"""Training-step time of the `sensor:conv2d` tower: NCHW (contiguous) vs NHWC (channels_last, the default).

Same weights and inputs in both layouts, interleaved repeats, median of each; prints a table and writes
JSON with the load average (the machine is shared). The outputs must agree to float rounding.

    python benchmarks/sensor_tower.py --shape 32,24 --batch 128 --out benchmarks/results/sensor_tower.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch


def _step_ms(net: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        net.zero_grad(set_to_none=True)
        net(x).square().mean().backward()
    return (time.perf_counter() - t) / steps * 1000


def main() -> None:
    from crossalign.encoders.sensor import SensorEncoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="32,24", help="H,W of one sensor map (scenes' radar: 32,24)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="training steps per timing")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/sensor_tower.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = tuple(int(s) for s in args.shape.split(","))
    enc = SensorEncoder("conv2d", shape)
    nhwc = enc.net.train()
    nchw = copy.deepcopy(nhwc).to(memory_format=torch.contiguous_format)
    x = torch.randn(args.batch, 1, *shape)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        diff = float((nchw(x) - nhwc(x_nhwc)).abs().max() / nchw(x).abs().max())
    load = Path("/proc/loadavg").read_text().split()[:3]
    times: dict[str, list[float]] = {"NCHW": [], "NHWC": []}
    for net, xx in ((nchw, x), (nhwc, x_nhwc)):
        _step_ms(net, xx, 3)  # warm-up
    for _ in range(args.repeats):  # interleaved, so a load change hits both
        times["NCHW"].append(_step_ms(nchw, x, args.steps))
        times["NHWC"].append(_step_ms(nhwc, x_nhwc, args.steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"shape": list(shape), "batch": args.batch, "threads": args.threads, "steps": args.steps,
           "repeats": args.repeats, "ms_per_step": times, "median_ms": med, "speed-up": med["NCHW"] / med["NHWC"],
           "max_rel_output_diff": diff, "load_before": load, "load_after": Path("/proc/loadavg").read_text().split()[:3],
           "torch": torch.__version__}
    print(f"| layout | training step (ms, median of {args.repeats} x {args.steps}) | vs NCHW |\n|---|---|---|")
    for k in ("NCHW", "NHWC"):
        print(f"| {k} | {med[k]:.1f} | {med['NCHW'] / med[k]:.2f}x |")
    print(f"sensor map {shape}, batch {args.batch}, {args.threads} threads; outputs agree to {diff:.1e} (relative); "
          f"load {load} -> {res['load_after']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
