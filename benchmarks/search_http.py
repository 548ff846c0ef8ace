"""`crossalign serve` under load for benchmarks/search.py (section 3, `http`).

The server starts on a free loopback port with a run and an index; 16 concurrent clients (threads,
keep-alive), bounded by a request count and a time limit: requests/s, p50/p99 latency, errors, and
how many encoder calls served them (batching).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(
    url: str, path: str, bodies: list[dict[str, Any]], clients: int, max_requests: int, max_s: float
) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    issued = [0]
    t_end = time.monotonic() + max_s

    def worker(wid: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.monotonic() < t_end:
                with lock:
                    if issued[0] >= max_requests:
                        return
                    i = issued[0]
                    issued[0] += 1
                t = time.perf_counter()
                try:
                    r = c.post(path, json=bodies[i % len(bodies)])
                    code = str(r.status_code) if r.status_code != 200 else None
                except Exception as e:  # a refused or dropped connection counts as an error
                    code = type(e).__name__
                with lock:
                    if code:
                        errors[code] = errors.get(code, 0) + 1
                    else:
                        lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {
        "endpoint": path,
        "clients": clients,
        "requests": issued[0],
        "ok": len(lat),
        "errors": sum(errors.values()),
        "error_codes": errors,
        "wall_s": round(wall, 2),
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(a, 50)), 1) if len(a) else None,
        "p99_ms": round(float(np.percentile(a, 99)), 1) if len(a) else None,
    }


def bench_http(
    run: Path, index: Path, texts: list[str], clients: int, max_requests: int, max_s: float
) -> list[dict]:
    """The service as configured, then with batching off (`--max-batch 1`) for comparison."""
    out = _serve_and_load(
        run, index, texts, clients, max_requests, max_s, [], ("/v1/search", "/v1/embeddings")
    )
    out += _serve_and_load(
        run, index, texts, clients, max_requests, max_s, ["--max-batch", "1"], ("/v1/search",)
    )
    return out


def _serve_and_load(
    run: Path,
    index: Path,
    texts: list[str],
    clients: int,
    max_requests: int,
    max_s: float,
    extra: list[str],
    endpoints: tuple[str, ...],
) -> list[dict]:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crossalign",
            "serve",
            str(run),
            "--index",
            str(index),
            "--port",
            str(port),
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited; see {log.name}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log.name}")
            time.sleep(0.5)
        out = []
        loads = {
            "/v1/search": [{"text": t, "k": 10, "modality": "image"} for t in texts],
            "/v1/embeddings": [{"input": t, "model": "crossalign"} for t in texts],
        }
        for path in endpoints:
            bodies = loads[path]
            before = httpx.get(url + "/health").json()["batching"]
            res = _load(url, path, bodies, clients, max_requests, max_s)
            after = httpx.get(url + "/health").json()["batching"]
            calls = after["encoder_calls"] - before["encoder_calls"]
            res.update(
                encoder_calls=calls,
                items_per_call=round((after["items"] - before["items"]) / max(calls, 1), 2),
                server_args=" ".join(extra) or "default",
            )
            out.append(res)
            print(
                f"  {path:15s} [{res['server_args']}] {res['rps']:7.1f} req/s  p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  "
                f"errors {res['errors']}  ({res['items_per_call']} queries per encoder call)",
                flush=True,
            )
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _http_setup(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path, list[str]] | None:
    run = Path(args.run)
    if not (run / "config.json").exists():
        print(f"http: no run at {run} (run `crossalign demo` or pass --run); skipped")
        return None
    from crossalign.data.manifest import load_manifest
    from crossalign.index import build_index

    data = Path(args.data) if args.data else run.parent / "data"
    m = load_manifest(data)
    index = Path(args.index) if args.index else tmp / "http-index"
    if not args.index:
        build_index(run, m, index, ["image"], split="test")
    texts = [r["text"] for r in m.select("test").rows][:200]
    return run, index, texts
