"""Stopping the processes the federation engine started: by PID, terminate then kill after a grace."""

from __future__ import annotations

from typing import Any

__all__ = ["terminate_then_kill"]


def terminate_then_kill(procs: list[Any], grace: float, terminated: bool = False) -> None:
    """SIGTERM each psutil process (unless `terminated`), SIGKILL what outlives `grace` seconds."""
    import psutil

    if not terminated:
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)
