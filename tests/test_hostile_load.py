"""16 concurrent clients for 30 s against a real server, a quarter of the requests hostile (bombs,
deep JSON, invalid Unicode, oversize chunked bodies): no 5xx, no dropped connection, every normal
request answered, server RSS growth < 300 MB. Runs benchmarks/load.py as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bombs_mixed_into_normal_traffic(tiny_run: Path, scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.index import build_index

    idx = tmp_path / "index"
    build_index(tiny_run, scenes_small, idx, ["image", "text"], split="test")
    out = tmp_path / "load.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load.py"), "--run", str(tiny_run),
                        "--index", str(idx), "--data", str(scenes_small), "--clients", "16", "--seconds", "30",
                        "--out", str(out)], capture_output=True, text=True, timeout=400,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["errors_5xx"] == 0 and res["failed_connections"] == 0, p.stdout
    assert res["normal_ok"] == res["normal_requests"] > 50, p.stdout
    assert res["unexpected_status"] == 0, p.stdout
    assert res["bomb_requests"] > 20, p.stdout
    assert res["rss_growth_mb"] < 300, p.stdout
    log = out.with_suffix(".server.log").read_text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]
