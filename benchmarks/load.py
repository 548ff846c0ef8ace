"""Load with hostile traffic: concurrent clients send normal requests with decompression bombs and
malformed bodies mixed in, against a real `crossalign serve` on 127.0.0.1.

Prints requests, errors (5xx, dropped connections, timeouts), p50/p99 latency of the normal
requests and the server's RSS before / peak / after; writes the figures as JSON. Without --url it
starts the server itself (and builds a test-split index of --data when no --index is given).

    python benchmarks/load.py --run runs/demo/run --data runs/demo/data --seconds 30 \
        --out benchmarks/results/load.json
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hostile_payloads import (  # noqa: E402
    deep_json, flac_silence, npy_bomb, npz_bomb, png_bomb, wav_many_channels,
)

Request = Callable[[httpx.Client], httpx.Response]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _raw(path: str, body: bytes) -> Request:
    return lambda c: c.post(path, content=body, headers={"content-type": "application/json"})


def normal_requests(data: Path) -> dict[str, Request]:
    img = _b64(next((data / "images").glob("*.png")).read_bytes()) if (data / "images").is_dir() else None
    reqs: dict[str, Request] = {
        "search-text": lambda c: c.post("/v1/search", json={"text": "a large red circle at the top left", "k": 5}),
        "embed-text": lambda c: c.post("/v1/embeddings", json={"input": ["a red circle", "a small blue star",
                                                                         "two green squares"]}),
    }
    if img:
        reqs["search-image"] = lambda c: c.post("/v1/search", json={"image": img, "k": 5})
    return reqs


def bomb_requests(max_upload_mb: float) -> dict[str, tuple[Request, tuple[int, ...]]]:
    """name -> (request, acceptable statuses)."""
    png, big_png, hour = png_bomb(12000, 12000), png_bomb(20000, 20000), flac_silence(3600, 8000)
    zbomb, many = npz_bomb(128), wav_many_channels(64)
    cx = io.BytesIO()
    np.save(cx, np.ones((8, 8), np.complex64))
    over = int(max_upload_mb * 2**20) + 1
    return {
        "png-bomb-json": (lambda c: c.post("/v1/search", json={"image": _b64(png)}), (413,)),
        "png-bomb-multipart": (lambda c: c.post("/v1/search", files={"image": ("b.png", big_png, "image/png")}),
                               (413,)),
        "png-bomb-embed": (lambda c: c.post("/v1/embeddings", json={"input": [{"type": "image", "data": _b64(png)}]}),
                           (413,)),
        "flac-hour": (lambda c: c.post("/v1/search", files={"audio": ("h.flac", hour, "audio/flac")}), (200,)),
        "npz-bomb": (lambda c: c.post("/v1/search", files={"sensor": ("z.npy", zbomb, "application/octet-stream")}),
                     (400, 413)),
        "npy-header-bomb": (lambda c: c.post("/v1/search", json={"sensor": _b64(npy_bomb())}), (413,)),
        "wav-64-channels": (lambda c: c.post("/v1/search", json={"audio": _b64(many)}), (413,)),
        "complex-npy": (lambda c: c.post("/v1/search", json={"sensor": _b64(cx.getvalue())}), (400,)),
        "deep-json": (_raw("/v1/search", deep_json(100_000, "sensor")), (400,)),
        "lone-surrogate": (_raw("/v1/embeddings", b'{"input": ["a \\ud800"]}'), (400,)),
        "chunked-over-limit": (lambda c: c.post("/v1/search", content=iter([b"x" * 65536] * (over // 65536 + 2)),
                                                headers={"content-type": "application/json"}), (413,)),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, index: Path, max_upload_mb: float, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    logf = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "crossalign", "serve", str(run), "--index", str(index),
                             "--port", str(port), "--max-upload-mb", str(max_upload_mb)],
                            stdout=logf, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError("server exited: " + log.read_text()[-2000:])
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not come up: " + log.read_text()[-2000:])
        time.sleep(0.5)


def run_load(url: str, pid: int | None, normal: dict[str, Request], bombs: dict[str, tuple[Request, tuple[int, ...]]],
             clients: int, seconds: float, bomb_share: float, seed: int = 0) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=60) as c:  # warm every route once before measuring RSS
        for f in normal.values():
            f(c)
    rss_before = rss_mb(pid) if pid else float("nan")
    peak = [rss_before]
    timeline: list[tuple[float, float]] = []  # (s since start, RSS MB) once a second: a plateau is concurrency, a slope a leak
    stop = threading.Event()
    records: list[tuple[str, bool, int, float, bool]] = []  # kind, is_bomb, status (-1: failed), s, expected
    lock = threading.Lock()

    def sampler() -> None:
        t_start, last = time.perf_counter(), -1.0
        while not stop.is_set() and pid:
            now, mb = time.perf_counter() - t_start, rss_mb(pid)
            peak[0] = max(peak[0], mb)
            if now - last >= 1.0:
                timeline.append((round(now, 1), round(mb, 1)))
                last = now
            time.sleep(0.25)

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        names, bnames = list(normal), list(bombs)
        with httpx.Client(base_url=url, timeout=60) as c:
            while not stop.is_set():
                is_bomb = rng.random() < bomb_share
                name = rng.choice(bnames if is_bomb else names)
                t0 = time.perf_counter()
                try:
                    r = (bombs[name][0] if is_bomb else normal[name])(c)
                    status = r.status_code
                except httpx.HTTPError:
                    status = -1
                dt = time.perf_counter() - t0
                ok = status in (bombs[name][1] if is_bomb else (200,))
                with lock:
                    records.append((name, is_bomb, status, dt, ok))

    threads = [threading.Thread(target=sampler)] + [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    time.sleep(1.0)
    rss_after = rss_mb(pid) if pid else float("nan")
    lat = np.array([r[3] for r in records if not r[1] and r[2] == 200])
    by_kind: dict[str, dict[str, Any]] = {}
    for name, is_bomb, status, dt, ok in records:
        k = by_kind.setdefault(name, {"bomb": is_bomb, "n": 0, "statuses": {}, "unexpected": 0})
        k["n"] += 1
        k["statuses"][str(status)] = k["statuses"].get(str(status), 0) + 1
        k["unexpected"] += 0 if ok else 1
    normal_recs = [r for r in records if not r[1]]
    return {
        "clients": clients, "seconds": round(wall, 1), "bomb_share": bomb_share,
        "requests": len(records), "normal_requests": len(normal_recs),
        "normal_ok": sum(1 for r in normal_recs if r[2] == 200),
        "bomb_requests": len(records) - len(normal_recs),
        "errors_5xx": sum(1 for r in records if r[2] >= 500),
        "failed_connections": sum(1 for r in records if r[2] == -1),
        "unexpected_status": sum(1 for r in records if not r[4]),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1) if len(lat) else None,
        "rss_before_mb": round(rss_before, 1), "rss_peak_mb": round(peak[0], 1), "rss_after_mb": round(rss_after, 1),
        "rss_growth_mb": round(max(peak[0], rss_after) - rss_before, 1),
        "rss_timeline": timeline,
        "by_kind": by_kind,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="run folder (server started here)")
    ap.add_argument("--index", type=Path, help="index folder (default: built from --data, test split)")
    ap.add_argument("--data", type=Path, required=True, help="manifest folder (sample images for queries)")
    ap.add_argument("--url", help="use a running server instead (RSS needs --pid)")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--bomb-share", type=float, default=0.25, help="fraction of requests that are hostile")
    ap.add_argument("--max-upload-mb", type=float, default=10)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/load.json"))
    a = ap.parse_args()
    proc = None
    url, pid = a.url, a.pid
    if url is None:
        if a.run is None:
            ap.error("give --run (to start a server) or --url")
        index = a.index
        if index is None:
            from crossalign.index import build_index

            import tempfile

            index = Path(tempfile.mkdtemp(prefix="crossalign-load-")) / "index"
            build_index(a.run, a.data, index, ["image", "text"], split="test", overwrite=True)
        proc, url = start_server(a.run, index, a.max_upload_mb, a.out.with_suffix(".server.log"))
        pid = proc.pid
    try:
        res = run_load(url, pid, normal_requests(a.data), bomb_requests(a.max_upload_mb), a.clients,
                       a.seconds, a.bomb_share)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    res["load_average"] = os.getloadavg()
    res["cpus"] = os.cpu_count()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(f"{res['clients']} clients, {res['seconds']} s, {res['bomb_share']:.0%} hostile; "
          f"load average {' '.join(f'{x:.1f}' for x in res['load_average'])} on {res['cpus']} CPUs")
    print(f"{'requests':>9} {'normal ok':>10} {'bombs':>6} {'5xx':>4} {'dropped':>8} {'unexpected':>10} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'RSS before':>10} {'peak':>6} {'after':>6}")
    print(f"{res['requests']:>9} {res['normal_ok']:>5}/{res['normal_requests']:<4} {res['bomb_requests']:>6} "
          f"{res['errors_5xx']:>4} {res['failed_connections']:>8} {res['unexpected_status']:>10} "
          f"{res['p50_ms']:>7} {res['p99_ms']:>7} {res['rss_before_mb']:>10.0f} {res['rss_peak_mb']:>6.0f} "
          f"{res['rss_after_mb']:>6.0f}")
    for name, k in sorted(res["by_kind"].items(), key=lambda kv: (kv[1]["bomb"], kv[0])):
        print(f"  {'bomb  ' if k['bomb'] else 'normal'} {name:<20} n={k['n']:<5} statuses={k['statuses']}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
