"""AdamW step time on CPU: torch's default per-tensor loop vs `foreach` vs `fused`, on a run's own tensors.

The trainer builds AdamW with `fused=True` (foreach where a device lacks it), because on CPU torch's
default is the per-tensor loop; this measures what that buys on the parameters of a real run folder (default: the demo's joint model,
`last.safetensors`), side by side in one process, and checks that the three give the same update.

    python benchmarks/optimizer_step.py runs/demo/run --out benchmarks/results/optimizer_step.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("run", type=Path, nargs="?", default=Path("runs/demo/run"))
ap.add_argument("--steps", type=int, default=30)
ap.add_argument("--out", type=Path, default=Path("benchmarks/results/optimizer_step.json"))
a = ap.parse_args()

weights = load_file(str(a.run / "last.safetensors"))
floats = {k: v for k, v in weights.items() if v.is_floating_point()}
n_elems = sum(v.numel() for v in floats.values())
gen = torch.Generator().manual_seed(0)
grads = {k: torch.randn(v.shape, generator=gen) * 1e-2 for k, v in floats.items()}  # one fixed gradient per tensor

MODES = {"per-tensor (torch's CPU default)": {"foreach": False}, "foreach": {"foreach": True},
         "fused (the trainer's)": {"fused": True}}
rows, finals = [], {}
for name, kw in MODES.items():
    params = [torch.nn.Parameter(v.clone().float()) for v in floats.values()]
    for p, g in zip(params, grads.values()):
        p.grad = g.clone()
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2, **kw)
    for _ in range(3):  # warm-up: state allocation
        opt.step()
    t = time.perf_counter()
    for _ in range(a.steps):
        opt.step()
    ms = (time.perf_counter() - t) / a.steps * 1e3
    finals[name] = torch.cat([p.detach().flatten() for p in params])
    rows.append({"mode": name, "ms_per_step": round(ms, 2)})

ref = finals[next(iter(MODES))]
for r in rows:
    f = finals[r["mode"]]
    r["speedup"] = round(rows[0]["ms_per_step"] / r["ms_per_step"], 2)
    r["max_rel_diff"] = float(((f - ref).abs().max() / ref.abs().max()).item())  # same update, up to rounding
load = os.getloadavg()
print(f"{len(floats)} tensors, {n_elems:,} floats from {a.run / 'last.safetensors'}; "
      f"{a.steps} steps; torch {torch.__version__}, {torch.get_num_threads()} threads; load average {load[0]:.2f}")
print(f"{'mode':<34} {'ms/step':>8} {'speedup':>8} {'max rel diff':>13}")
for r in rows:
    print(f"{r['mode']:<34} {r['ms_per_step']:>8.2f} {r['speedup']:>7.2f}x {r['max_rel_diff']:>13.1e}")
a.out.parent.mkdir(parents=True, exist_ok=True)
a.out.write_text(json.dumps({"run": str(a.run), "tensors": len(floats), "floats": n_elems, "steps": a.steps,
                             "torch": torch.__version__, "threads": torch.get_num_threads(),
                             "load_average": list(load), "rows": rows}, indent=2))
print(f"wrote {a.out}")
