"""Scale-out benchmarks: data-parallel throughput (1 vs N processes), GradCache memory, flat-memory
streaming extraction, and LoRA / partial unfreezing of the image tower on scenes.

    python benchmarks/scale.py --out scale.json                 # everything, CPU-sized
    python benchmarks/scale.py --only throughput --nproc 1,2,4  # same script on a multi-GPU box
    python benchmarks/scale.py --only stream --sensor 1000000 --images 100000

Every measurement that needs a fresh process (peak RSS, torchrun workers) runs this same file as a
worker (`--worker KIND`), so numbers are per process and never mix with the parent's memory.
Ratios (scaling efficiency, memory ratio) are computed within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _worker_cmd(kind: str, *extra: str, nproc: int = 0) -> list[str]:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
              if nproc else [sys.executable])
    return [*launch, str(HERE), "--worker", kind, *extra]


def _run_json(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- workers
def _synthetic_table(n: int, dims: tuple[int, int] = (1280, 384)):  # type: ignore[no-untyped-def]
    from crossalign.data.features import FeatureTable
    from crossalign.data.manifest import Manifest
    from crossalign.encoders import EncoderSpec

    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 32)).astype(np.float32)
    feats = {c: z @ rng.normal(size=(32, d)).astype(np.float32) + rng.normal(size=(n, d)).astype(np.float32)
             for c, d in zip(("image", "text"), dims)}
    rows = [{"id": str(i), "split": "val" if i % 20 == 0 else "train"} for i in range(n)]
    specs = {c: EncoderSpec(f"{c}:synthetic", c, "1", (f.shape[1],), trainable=False) for c, f in feats.items()}
    return FeatureTable(Manifest(rows, None, Path.cwd()), np.arange(n), feats, specs, [])


def worker_throughput(a: argparse.Namespace) -> None:
    from crossalign.config import RunConfig
    from crossalign.recipes.align import train
    from crossalign.train.distributed import init_from_env, shutdown

    ctx = init_from_env()
    table = _synthetic_table(a.rows)
    out = Path(a.tmp) / f"run-{ctx.world_size}"
    cfg = RunConfig.from_dict({"model": {"views": [{"column": "image"}, {"column": "text"}], "dim": 256,
                                         "head": {"hidden": 1024}},
                               "train": {"data": "-", "out": str(out), "epochs": a.epochs, "batch_size": a.batch,
                                         "progress": False, "patience": 0}})
    t0 = time.perf_counter()
    train(cfg, resume=False, table=table, dist=ctx)
    wall = time.perf_counter() - t0
    if ctx.rank == 0:
        recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        n_train = len(table.split("train"))
        steps = n_train // a.batch
        best = min(r["seconds"] for r in recs)  # best epoch: the least disturbed by other load
        print(json.dumps({"procs": ctx.world_size, "samples_per_s": steps * a.batch / best,
                          "best_epoch_s": best, "wall_s": wall}))
    shutdown()


def worker_memstep(a: argparse.Namespace) -> None:
    """One training step of a trainable tower + heads at contrastive batch B: plain or GradCache.

    `--tower sensor`: the scenes radar tower (sensor:conv2d on 32x24 maps, trained from scratch);
    `--tower minilm`: the MiniLM text tower fine-tuned end to end."""
    import torch

    from crossalign.align.gradcache import grad_cache_step
    from crossalign.align.model import AlignmentModel
    from crossalign.align.objectives import build_objective
    from crossalign.config import ModelConfig
    from crossalign.encoders import EncoderSpec, build_encoder

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if a.tower == "minilm":
        col, tower = "text", build_encoder("text:minilm")
        words = ["red", "green", "blue", "circle", "square", "star", "top", "left", "bottom", "right"]
        x: Any = [" ".join(rng.choice(words, 12)) for _ in range(a.batch)]
    else:
        col, tower = "sensor", build_encoder("sensor:conv2d", input_shape=[32, 24])
        x = torch.randn(a.batch, 32, 24)
    specs = {"image": EncoderSpec("image:synthetic", "image", "1", (64,), trainable=False), col: tower.spec}
    cfg = ModelConfig(views=[{"column": "image"}, {"column": col}], dim=64, train_towers=[col])
    model = AlignmentModel(cfg, specs, {col: tower}).train()
    batch = {"image": torch.randn(a.batch, 64), col: x}
    obj = build_objective("infonce")

    def loss_fn(e: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return obj(e, pairs=[("image", col, 1.0)], logit_scale=model.scale())

    base = _rss_mb()
    t0 = time.perf_counter()
    if a.mode == "plain":
        loss_fn(model(batch))["loss"].backward()
    else:
        grad_cache_step(model.embed, batch, loss_fn, a.chunk, model)
    print(json.dumps({"tower": a.tower, "mode": a.mode, "batch": a.batch, "base_mb": base, "peak_mb": _peak_mb(),
                      "step_delta_mb": _peak_mb() - base, "step_s": time.perf_counter() - t0}))


def worker_stream(a: argparse.Namespace) -> None:
    """Embed `n` generated items (sensor arrays or rendered scenes) chunk by chunk into a store."""
    import random

    import torch

    from crossalign.data.shards import FeatureStore, encode_stream
    from crossalign.encoders import build_encoder
    from crossalign.modalities import get_reader

    torch.set_grad_enabled(False)
    if a.kind == "sensor":
        enc = build_encoder("sensor:mlp", input_shape=[32, 24], dim=64).eval()
        rng = np.random.default_rng(0)

        def rows():  # type: ignore[no-untyped-def]
            for i in range(a.n):
                yield {"id": f"{i:08d}", "sensor": rng.normal(size=(32, 24)).astype(np.float32)}

        def embed(raws: list[Any]) -> np.ndarray:
            return enc(torch.from_numpy(np.stack(raws))).numpy()
    else:
        from crossalign.datasets.scenes.render import render
        from crossalign.datasets.scenes.scene import sample_scene

        enc = build_encoder("image:efficientnet-lite0", size=128)
        rnd = random.Random(0)

        def rows():  # type: ignore[no-untyped-def]
            for i in range(a.n):
                yield {"id": f"{i:08d}", "image": render(sample_scene(rnd), rnd)}

        def embed(raws: list[Any]) -> np.ndarray:
            return enc.encode(raws).numpy()
    base = _rss_mb()
    with tempfile.TemporaryDirectory(dir=a.tmp) as d:
        t0 = time.perf_counter()
        n = encode_stream(rows(), a.kind, embed, FeatureStore(Path(d)), read=get_reader(a.kind).read,
                          chunk=a.chunk)
        sec = time.perf_counter() - t0
        store_mb = sum(f.stat().st_size for f in Path(d).iterdir()) / 2**20
    print(json.dumps({"kind": a.kind, "items": n, "base_mb": base, "peak_mb": _peak_mb(),
                      "items_per_s": n / sec, "store_mb": store_mb}))


WORKERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "throughput": worker_throughput, "memstep": worker_memstep, "stream": worker_stream}


# ----------------------------------------------------------------------------- sections
def section_throughput(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Data-parallel samples/s at one global batch. The first row (1 process using every core) is the
    baseline; `1 process, 1 thread` separates the cost of threading from that of data parallelism."""
    rows = []
    cores = os.cpu_count() or 1
    plan = [(1, cores)] + ([(1, 1)] if cores > 1 else []) + [(n, max(1, cores // n))
                                                          for n in [int(x) for x in a.nproc.split(",")] if n > 1]
    for n, threads in plan:
        r = _run_json(_worker_cmd("throughput", "--tmp", str(tmp), "--rows", str(a.rows), "--batch",
                                  str(a.batch), "--epochs", str(a.epochs), nproc=n), {"OMP_NUM_THREADS": str(threads)})
        rows.append({"procs": n, "threads_per_proc": threads, **{k: v for k, v in r.items() if k != "procs"}})
        print(f"  throughput: {n} proc x {threads} threads: {r['samples_per_s']:.0f} samples/s", file=sys.stderr)
    one = rows[0]["samples_per_s"]
    for r in rows:
        r["speedup"] = r["samples_per_s"] / one
        r["efficiency"] = r["speedup"] / r["procs"] if r["threads_per_proc"] * r["procs"] >= cores else float("nan")
    return {"rows": rows, "cores": cores, "global_batch": a.batch, "train_rows": a.rows}


def section_gradcache(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    res = []
    for mode in ("plain", "gradcache"):
        for b in [int(x) for x in a.gc_batches.split(",")]:
            r = _run_json(_worker_cmd("memstep", "--mode", mode, "--batch", str(b), "--chunk", str(a.chunk),
                                      "--tower", a.tower),
                          {"OMP_NUM_THREADS": str(os.cpu_count() or 1)})
            res.append(r)
            print(f"  gradcache: {mode:9s} batch {b:5d}: +{r['step_delta_mb']:.0f} MB, {r['step_s']:.1f} s",
                  file=sys.stderr)
    largest = {m: max([r["batch"] for r in res if r["mode"] == m and r["step_delta_mb"] <= a.cap_mb], default=0)
               for m in ("plain", "gradcache")}
    return {"rows": res, "cap_mb": a.cap_mb, "chunk": a.chunk, "tower": a.tower, "largest_batch_under_cap": largest}


def section_stream(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    res = []
    for kind, sizes in (("sensor", a.sensor), ("image", a.images)):
        for n in [int(x) for x in sizes.split(",") if x]:
            r = _run_json(_worker_cmd("stream", "--kind", kind, "--n", str(n), "--tmp", str(tmp),
                                      "--chunk", "1024" if kind == "sensor" else "64"))
            res.append(r)
            print(f"  stream: {kind} {n}: peak {r['peak_mb']:.0f} MB", file=sys.stderr)
    return {"rows": res}


def section_tuning(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Frozen towers vs partial unfreezing vs LoRA of the image tower on scenes (image + text)."""
    from crossalign.config import RunConfig
    from crossalign.datasets.registry import make_dataset
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.recipes.align import train

    data = tmp / "scenes"
    make_dataset("scenes", data, n=a.scenes, seed=1, audio=False)
    image = {"column": "image", "options": {"grid": 2, "color": True, "size": 128}}
    variants = {
        "frozen towers": ({}, {}),
        "image: unfreeze last 2 blocks": ({"image": {"method": "unfreeze", "last_blocks": 2}}, {"tower_lr": 1e-4}),
        "image: LoRA r=8 on last 2 blocks": ({"image": {"method": "lora", "r": 8, "last_blocks": 2}},
                                             {"tower_lr": 1e-3}),
    }
    res = []
    for name, (tuning, extra) in variants.items():
        cfg = RunConfig.from_dict({
            "model": {"views": [image, {"column": "text"}], "dim": 128, "head": {"hidden": 512},
                      "train_towers": list(tuning), "tower_tuning": tuning},
            "train": {"data": str(data), "out": str(tmp / name.replace(" ", "_").replace(":", "")),
                      "epochs": a.tune_epochs, "batch_size": 64, "patience": 0, "progress": False, **extra}})
        t0 = time.perf_counter()
        run, _ = train(cfg, resume=False)
        sec = time.perf_counter() - t0
        m = evaluate_run(run, split="test").metrics
        hard = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("image/hardneg_acc")}
        res.append({"variant": name, "image->text R@1": m.get("image->text/R@1"),
                    "text->image R@1": m.get("text->image/R@1"), **hard, "train_s": sec})
        print(f"  tuning: {name}: {res[-1]}", file=sys.stderr)
    return {"rows": res, "scenes": a.scenes, "epochs": a.tune_epochs}


SECTIONS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "throughput": section_throughput, "gradcache": section_gradcache, "stream": section_stream,
    "tuning": section_tuning}


def _table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = [f"### {title}", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="throughput,gradcache,stream,tuning")
    p.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    p.add_argument("--nproc", default="1,2", help="process counts for the throughput section")
    p.add_argument("--rows", type=int, default=16384)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--gc-batches", default="256,512,1024,2048,4096")
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--tower", choices=["sensor", "minilm"], default="sensor", help="trainable tower for gradcache")
    p.add_argument("--cap-mb", type=float, default=1024.0, help="memory cap for the largest-batch search")
    p.add_argument("--sensor", default="10000,100000,1000000")
    p.add_argument("--images", default="500,2000")
    p.add_argument("--scenes", type=int, default=600)
    p.add_argument("--tune-epochs", type=int, default=6)
    p.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="plain", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="sensor", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        WORKERS[a.worker](a)
        return
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="crossalign-scale-") as d:
        os.environ.setdefault("CROSSALIGN_CACHE", str(Path(d) / "cache"))
        for name in a.only.split(","):
            print(f"[scale] {name} ...", file=sys.stderr)
            t0 = time.perf_counter()
            results[name] = SECTIONS[name](a, Path(d))
            results[name]["section_s"] = time.perf_counter() - t0
            print(_table(name, results[name]["rows"]))
            if a.out:  # after every section, so a long run keeps what it measured
                a.out.parent.mkdir(parents=True, exist_ok=True)
                a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
