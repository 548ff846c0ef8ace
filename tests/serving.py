"""A real `crossalign serve` process on 127.0.0.1 for HTTP tests: started, waited for, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx

__all__ = ["free_port", "serving"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(args: list[str], log: Path, env: dict[str, str] | None = None,
            start_timeout: float = 180.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`crossalign serve ARGS --port P` -> (base URL, process) once /health answers 200."""
    port = free_port()
    with open(log, "w") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "crossalign", "serve", *args, "--port", str(port)],
                                stdout=logf, stderr=subprocess.STDOUT, env=env or os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not come up: " + log.read_text()[-3000:]
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def embeddings_over_http(run: Path, texts: list[str], log: Path) -> tuple[Any, int]:
    """POST /v1/embeddings of `texts` to a real `crossalign serve RUN`: (vectors (n, dim), /health's dim)."""
    import numpy as np

    with serving([str(run)], log) as (url, _):
        res = httpx.post(url + "/v1/embeddings", json={"input": texts}, timeout=60)
        assert res.status_code == 200, res.text
        got = np.array([d["embedding"] for d in res.json()["data"]], dtype=np.float32)
        return got, int(httpx.get(url + "/health", timeout=10).json()["dim"])
