"""Cost of one bridge training step: the whole LM (projector trains) vs cached bottom layers.

    python benchmarks/bridge_step.py runs/demo/run runs/demo/data --cache-layers 22 --repeats 3

Same examples, same batch, SmolLM2-135M under bf16 autocast, the two paths interleaved so a loaded
machine slows both alike. Prints seconds per step (median), the one-off caching cost per example and
the load average; writes benchmarks/results/bridge_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--cache-layers", type=int, default=22)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/bridge_step.json")
    a = ap.parse_args()

    from crossalign.align.embedder import Embedder
    from crossalign.bridge.config import BridgeConfig
    from crossalign.bridge.embeddings import aligned_embeddings
    from crossalign.bridge.model import Bridge
    from crossalign.bridge.task import BridgeTask
    from crossalign.recipes.bridge import build_examples

    emb = Embedder.from_run(a.run)
    table = aligned_embeddings(emb, a.data, progress=False)
    rows = table.where("train")[:a.batch_size]
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    common = dict(projector="slots", qa_per_row=1, lora_r=16, free_tokens=0, lora_targets=targets)
    plain = Bridge.new(BridgeConfig(**common), emb.model.out_dim, embedder=emb)  # type: ignore[arg-type]
    cached = Bridge.new(BridgeConfig(**common, cache_layers=a.cache_layers), emb.model.out_dim,  # type: ignore[arg-type]
                        embedder=emb)  # its own LM copy: the adapters go into the model in place
    ex, z = build_examples(table, rows, ["image"], plain.cfg)
    idx = torch.arange(min(a.batch_size, len(ex)))
    plain.enable_lora()  # the plain path with adapters on every layer (lora_stage joint)
    t_plain = BridgeTask(plain, ex, z, ex[:2], z)
    t0 = time.perf_counter()
    cached.enable_lora()  # adapters on the top layers only
    t_cached = BridgeTask(cached, ex, z, ex[:2], z)
    cache_s = (time.perf_counter() - t0) / len(ex)
    times: dict[str, list[float]] = {"full LM (projector trains)": [], f"cached layers 0-{a.cache_layers}": []}
    for _ in range(a.repeats):
        for name, task in zip(times, (t_plain, t_cached)):
            t = time.perf_counter()
            loss, _ = task.training_forward(idx)
            loss["loss"].backward()
            times[name].append(time.perf_counter() - t)
            task.model.zero_grad(set_to_none=True)
    load = os.getloadavg()
    tokens = int(sum(t.shape[0] for t in t_cached.cache["train"].h[:len(idx)]))
    res = {"batch": len(idx), "tokens": tokens, "cache_layers": a.cache_layers, "layers": 30,
           "step_seconds": {k: statistics.median(v) for k, v in times.items()}, "all": times,
           "cache_seconds_per_example": cache_s, "loadavg": load}
    print(f"| path | s / step of {len(idx)} ({tokens} tokens) |\n|---|---|")
    for k, v in res["step_seconds"].items():
        print(f"| {k} | {v:.1f} |")
    print(f"caching: {cache_s:.2f} s per example, once; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
