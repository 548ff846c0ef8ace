"""Does bf16 autocast pay on this CPU? One SmolLM2-135M training step (forward + input-gradient
backward, the bridge projector's path) in fp32 and under bf16 autocast, interleaved.

    python benchmarks/bf16_cpu.py --batch-size 8 --tokens 40 --repeats 2

Prints seconds per phase (median), the ratio bf16 / fp32 and what crossalign decides for this CPU
(`align/precision.py`: autocast only where oneDNN runs bf16 natively); writes
benchmarks/results/bf16_cpu.json. On an AVX2-only CPU bf16 is emulated and much slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/bf16_cpu.json")
    a = ap.parse_args()

    from crossalign.align.precision import bf16_autocast_pays
    from crossalign.bridge.lm import load_lm

    lm = load_lm("smollm2")
    emb = lm.model.get_input_embeddings()
    ids = torch.randint(0, 1000, (a.batch_size, a.tokens), generator=torch.Generator().manual_seed(0))
    times: dict[str, dict[str, list[float]]] = {p: {"forward": [], "backward": []} for p in ("fp32", "bf16")}
    for _ in range(a.repeats):
        for name in ("fp32", "bf16"):  # interleaved: a load change slows both alike
            x = emb(ids).detach().requires_grad_(True)  # (B, T, H): the projector's prefix stands here
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16"):
                loss = lm.model(inputs_embeds=x, labels=ids).loss
            t1 = time.perf_counter()
            loss.backward()
            times[name]["forward"].append(t1 - t0)
            times[name]["backward"].append(time.perf_counter() - t1)
    med = {n: {ph: statistics.median(v) for ph, v in d.items()} for n, d in times.items()}
    print(f"CPU: {_cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch {a.batch_size} x {a.tokens} tokens")
    print(f"{'':6}{'forward s':>12}{'backward s':>12}")
    for n, d in med.items():
        print(f"{n:6}{d['forward']:12.2f}{d['backward']:12.2f}")
    ratio = {ph: med["bf16"][ph] / med["fp32"][ph] for ph in ("forward", "backward")}
    native = bf16_autocast_pays("cpu")
    print(f"bf16 / fp32: forward {ratio['forward']:.1f}x, backward {ratio['backward']:.1f}x; "
          f"crossalign uses bf16 autocast here: {native}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    out = {"cpu": _cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "batch_size": a.batch_size, "tokens": a.tokens, "repeats": a.repeats, "seconds": times,
           "median": med, "ratio_bf16_over_fp32": ratio, "autocast_used": native, "loadavg": load}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
