"""The server's JSON parser process does not outlive a server that is killed hard."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = """
import os, time
from crossalign.serve.body import _parser
print(_parser().submit(os.getpid).result(), flush=True)  # the worker's pid, once it runs
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie awaiting its reaper counts as gone)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_parser_worker_exits_when_the_server_is_killed() -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())  # type: ignore[union-attr]
        assert _alive(worker)
    finally:
        proc.kill()  # SIGKILL: no lifespan shutdown, no pool shutdown
        proc.wait()
    deadline = time.monotonic() + 15
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), f"parser worker {worker} outlived its server"
