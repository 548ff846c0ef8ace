"""Search benchmarks: crossalign's index vs. raw FAISS, approximate recall/speed, HTTP under load.

1. exact   `VectorIndex` (flat) vs. a bare `faiss.IndexFlatIP` on the same vectors and queries,
           batched (one call for all queries) and one query per call (the serving pattern); the
           two alternate repeat by repeat and each keeps its best, so load from other processes
           on a shared machine falls on both alike. Goal: crossalign/raw >= 0.9.
2. approx  IVF (and HNSW) at 100k and 1M synthetic vectors: recall@10 against exact search and
           queries/s over a sweep of nprobe / efSearch. Goal at 1M: recall@10 >= 0.95 at >= 10x
           the exact throughput. Vectors: unit-normalised points around 2,000 random centres in
           `--dim` dimensions (embedding-like clusters, not uniform noise, on which no ANN works).
3. http    `crossalign serve` started on a free loopback port with a run and an index; 16
           concurrent clients (threads, keep-alive), bounded by a request count and a time limit:
           requests/s, p50/p99 latency, errors, and how many encoder calls served them (batching).

    python benchmarks/search.py --out benchmarks/results/search.json
    python benchmarks/search.py --sizes 100000 --skip-http        # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from search_http import _http_setup, bench_http  # the HTTP section, beside this script

from crossalign.index import IndexParams, VectorIndex


def clustered(n: int, dim: int, seed: int, centers: int = 2000, noise: float = 1.2) -> np.ndarray:
    # noise 1.2 (as large as the centre itself) makes clusters overlap: IVF at 100k then needs
    # nprobe ~32 for recall 0.94. With noise 0.8 every method scores ~0.99 and shows nothing.
    rng = np.random.default_rng(0)  # the same centres for data and queries
    c = rng.standard_normal((centers, dim), dtype=np.float32) / np.sqrt(dim)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):  # chunks keep the float temporaries small at 1M
        m = min(100_000, n - s)
        x = c[rng.integers(0, centers, m)] + noise * rng.standard_normal(
            (m, dim), dtype=np.float32
        ) / np.sqrt(dim)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _items(n: int) -> list[dict[str, Any]]:
    return [{"id": str(i), "modality": "image"} for i in range(n)]


def _build(tmp: Path, name: str, x: np.ndarray, params: IndexParams) -> tuple[VectorIndex, float]:
    t = time.perf_counter()
    ix = VectorIndex.create(tmp / name, x.shape[1], params)
    ix.add(x, _items(len(x)))
    return ix, time.perf_counter() - t


def _best(fn: Any, repeat: int) -> float:
    return min(_timed(fn) for _ in range(repeat))


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_exact(tmp: Path, n: int, dim: int, nq: int, k: int, repeat: int) -> dict[str, Any]:
    x, q = clustered(n, dim, 1), clustered(nq, dim, 2)
    raw = faiss.IndexFlatIP(dim)
    raw.add(x)
    ix, _ = _build(tmp, f"exact-{n}", x, IndexParams(kind="flat"))
    # Same answers first: a faster wrong index would be no result.
    _, ref = raw.search(q[:50], k)
    got = ix.search(q[:50], k)
    assert all([int(h.id) for h in g] == r.tolist() for g, r in zip(got, ref)), "crossalign != raw FAISS"
    single = q[: max(1, nq // 5)]
    threads = faiss.omp_get_max_threads()
    # Chunks alternate between the two (order swapped each time) and each chunk keeps its fastest
    # of `repeat` tries: on a shared machine, load bursts then hit both sides alike.
    t: dict[str, float] = {
        "raw_batched": 0.0,
        "ca_batched": 0.0,
        "raw_single": 0.0,
        "ca_single": 0.0,
        "raw_single_1t": 0.0,
    }
    for c in range(0, nq, 100):
        qc = q[c : c + 100]
        best = {"raw": float("inf"), "ca": float("inf")}
        for r in range(repeat):
            for name in ("raw", "ca") if r % 2 == 0 else ("ca", "raw"):
                fn = (lambda: raw.search(qc, k)) if name == "raw" else (lambda: ix.search(qc, k))
                best[name] = min(best[name], _timed(fn))
        t["raw_batched"] += best["raw"]
        t["ca_batched"] += best["ca"]
    for c in range(0, len(single), 20):
        sc = single[c : c + 20]
        best = {"raw_single": float("inf"), "ca_single": float("inf"), "raw_single_1t": float("inf")}
        for r in range(repeat):
            for name in (
                ("raw_single", "ca_single", "raw_single_1t")
                if r % 2 == 0
                else ("raw_single_1t", "ca_single", "raw_single")
            ):
                # crossalign runs lone queries on one OpenMP thread; raw FAISS is timed with its
                # default threads and with one, and the ratio uses its better setting.
                faiss.omp_set_num_threads(1 if name == "raw_single_1t" else threads)
                idx = ix if name == "ca_single" else raw
                best[name] = min(best[name], _timed(lambda: [idx.search(v[None], k) for v in sc]))
        faiss.omp_set_num_threads(threads)
        for key, v in best.items():
            t[key] += v
    qps = {key: (nq if "batched" in key else len(single)) / v for key, v in t.items()}
    return {
        "n": n,
        "dim": dim,
        "queries": nq,
        "k": k,
        **{f"{k_}_qps": round(v, 1) for k_, v in qps.items()},
        "ratio_batched": round(qps["ca_batched"] / qps["raw_batched"], 3),
        "ratio_single": round(qps["ca_single"] / max(qps["raw_single"], qps["raw_single_1t"]), 3),
    }


def bench_approx(
    tmp: Path, n: int, dim: int, nq: int, k: int, kinds: list[str], repeat: int
) -> list[dict[str, Any]]:
    x, q = clustered(n, dim, 1), clustered(nq, dim, 2)
    exact = faiss.IndexFlatIP(dim)
    exact.add(x)
    exact_s = _best(lambda e=exact: e.search(q, k), repeat)  # bound now: `exact` is deleted below
    _, truth = exact.search(q, k)
    exact_qps = nq / exact_s
    del exact
    rows = []
    for kind in kinds:
        ix, build_s = _build(tmp, f"{kind}-{n}", x, IndexParams(kind=kind))
        sweep = (
            [("nprobe", v) for v in (8, 16, 32, 64, 128)]
            if kind == "ivf"
            else [("ef_search", v) for v in (16, 32, 64, 128, 256)]
        )
        for knob, v in sweep:
            setattr(ix.params, knob, v)
            got = ix.search(q, k)
            recall = float(
                np.mean([len({int(h.id) for h in g} & set(t.tolist())) / k for g, t in zip(got, truth)])
            )
            s = _best(lambda i=ix: i.search(q, k), repeat)
            rows.append(
                {
                    "n": n,
                    "kind": kind,
                    knob: v,
                    "recall@10": round(recall, 4),
                    "qps": round(nq / s, 1),
                    "exact_qps": round(exact_qps, 1),
                    "speedup": round(exact_qps and (nq / s) / exact_qps, 2),
                    "build_s": round(build_s, 1),
                }
            )
            print(
                f"  {kind:5s} n={n:>8,} {knob}={v:<4d} recall@10={recall:.4f} {nq / s:9.1f} q/s "
                f"({rows[-1]['speedup']:.1f}x exact)",
                flush=True,
            )
        if kind == "ivf":  # what persisting and verifying a collection this size costs
            t = time.perf_counter()
            ix.commit()
            commit_s = time.perf_counter() - t
            t = time.perf_counter()
            VectorIndex.open(ix.path)
            rows[-1].update(commit_s=round(commit_s, 2), open_verify_s=round(time.perf_counter() - t, 2))
        ix.close()
        del ix
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes", default="100000,1000000", help="collection sizes for the approximate benchmark"
    )
    ap.add_argument("--exact-n", type=int, default=100_000, help="collection size for exact vs raw FAISS")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kinds", default="ivf,hnsw", help="approximate kinds to measure")
    ap.add_argument("--skip-exact", action="store_true", help="skip the crossalign-vs-raw comparison")
    ap.add_argument(
        "--hnsw-max", type=int, default=100_000, help="largest size HNSW is built at (slow on few cores)"
    )
    ap.add_argument("--run", default="runs/demo/run", help="run for the HTTP benchmark")
    ap.add_argument("--data", default=None, help="manifest for the HTTP index (default: RUN/../data)")
    ap.add_argument("--index", default=None, help="existing index for the HTTP benchmark")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--http-requests", type=int, default=800, help="requests per endpoint (upper bound)")
    ap.add_argument("--http-seconds", type=float, default=60, help="time limit per endpoint")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/search.json")
    args = ap.parse_args()
    k = 10
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "faiss": faiss.__version__,
            "omp_threads": faiss.omp_get_max_threads(),
        },
        "args": vars(args),
    }
    with tempfile.TemporaryDirectory(prefix="ca-search-bench-") as td:
        tmp = Path(td)
        ex: dict[str, Any] = {}
        if not args.skip_exact:
            print(
                f"exact search, n={args.exact_n:,}, dim={args.dim}, {args.queries} queries, k={k}", flush=True
            )
            ex = result["exact"] = bench_exact(tmp, args.exact_n, args.dim, args.queries, k, args.repeat)
            print(
                f"  batched: crossalign {ex['ca_batched_qps']:.0f} q/s, raw FAISS {ex['raw_batched_qps']:.0f} q/s, "
                f"ratio {ex['ratio_batched']:.3f}"
            )
            print(
                f"  single:  crossalign {ex['ca_single_qps']:.0f} q/s, raw FAISS {ex['raw_single_qps']:.0f} q/s "
                f"({ex['raw_single_1t_qps']:.0f} on 1 thread), ratio {ex['ratio_single']:.3f}",
                flush=True,
            )
        result["approx"] = []
        for n in [int(s) for s in args.sizes.split(",") if s]:
            kinds = [kd for kd in args.kinds.split(",") if kd and (kd != "hnsw" or n <= args.hnsw_max)]
            print(f"approximate search, n={n:,}", flush=True)
            result["approx"] += bench_approx(tmp, n, args.dim, args.queries, k, kinds, args.repeat)
        best = {}
        for r in result["approx"]:
            key = f"{r['kind']}@{r['n']}"
            if r["recall@10"] >= 0.95 and (key not in best or r["qps"] > best[key]["qps"]):
                best[key] = r
        result["approx_best_at_recall_0.95"] = best
        if not args.skip_http:
            print(f"http, {args.clients} concurrent clients", flush=True)
            setup = _http_setup(args, tmp)
            if setup:
                result["http"] = bench_http(*setup, args.clients, args.http_requests, args.http_seconds)
    print("\n| benchmark | setting | result |\n|---|---|---|")
    if ex:
        print(
            f"| exact vs raw FAISS (n={ex['n']:,}) | batched | {ex['ratio_batched']:.3f} ({ex['ca_batched_qps']:.0f} "
            f"vs {ex['raw_batched_qps']:.0f} q/s) |"
        )
        print(
            f"| exact vs raw FAISS (n={ex['n']:,}) | 1 query/call | {ex['ratio_single']:.3f} "
            f"({ex['ca_single_qps']:.0f} vs {max(ex['raw_single_qps'], ex['raw_single_1t_qps']):.0f} q/s) |"
        )
    for key, r in best.items():
        knob = "nprobe" if "nprobe" in r else "ef_search"
        print(
            f"| {key} | {knob}={r[knob]} | recall@10 {r['recall@10']:.3f}, {r['qps']:.0f} q/s = "
            f"{r['speedup']:.1f}x exact |"
        )
    for h in result.get("http", []):
        print(
            f"| http {h['endpoint']} ({h['server_args']}) | {h['clients']} clients, {h['requests']} req | {h['rps']:.1f} req/s, "
            f"p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms, {h['errors']} errors |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
