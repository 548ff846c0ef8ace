"""Run a federation in Flower's simulation engine (one SuperNode per site, Ray actors).

Flower's own outcome is never trusted alone: the result is our record (status, per-round
failures), written by the ServerApp; no record, or a failed one, is a failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from flwr.app import Message

from crossalign.federate.config import FederationConfig
from crossalign.federate.procs import terminate_then_kill
from crossalign.federate.record import FederationRecord

__all__ = ["run_federation"]

log = logging.getLogger(__name__)


def _children() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _stop_new_children(before: set[int], grace: float = 5.0, sweeps: int = 4) -> None:
    """Stop, by PID, any process the engine started and left running (Ray workers, raylet, gcs).
    Several sweeps: Ray's daemons can spawn a late worker while the first ones shut down."""
    import psutil

    for _ in range(sweeps):
        left = []
        for p in psutil.Process().children(recursive=True):
            try:
                if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE:
                    p.terminate()
                    left.append(p)
            except psutil.NoSuchProcess:
                continue
        if not left:
            return
        terminate_then_kill(left, grace, terminated=True)
        time.sleep(0.5)


def run_federation(fed: FederationConfig, out: str | Path, *, cpus: int | None = None,
                   on_receive: Callable[[int, str, Message], None] | None = None,
                   verbose: bool = False) -> FederationRecord:
    """All sites of `fed` as Flower SuperNodes in the simulation engine; returns the record (also in
    `out/federation.json`); the run folder lands in `out`."""
    from flwr.simulation import run_simulation

    from crossalign.federate.client import client_app
    from crossalign.federate.server import make_server_app

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "federation.json").unlink(missing_ok=True)
    own_home = "FLWR_HOME" not in os.environ
    if own_home:  # Flower state never lands in ~/.flwr
        os.environ["FLWR_HOME"] = tempfile.mkdtemp(prefix="crossalign-flwr-")
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    results: list[FederationRecord] = []
    ncpu = cpus or max(1, min(fed.sites, os.cpu_count() or 1))
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": ncpu, "num_gpus": 0, "include_dashboard": False,
                             "logging_level": logging.WARNING, "log_to_driver": verbose}}
    before = _children()
    try:
        run_simulation(server_app=make_server_app(fed, out, on_receive, results), client_app=client_app,
                       num_supernodes=fed.sites, backend_config=backend, verbose_logging=verbose)
    except Exception as e:  # the engine itself failed; our record (if any) says how far it got
        log.error("Flower simulation failed: %s", e)
        if not results:
            rec = FederationRecord(config=fed.to_dict(), status="failed", error=f"simulation engine: {e}")
            rec.save(out)
            results.append(rec)
    finally:
        _stop_new_children(before)
        if own_home:
            shutil.rmtree(os.environ.pop("FLWR_HOME"), ignore_errors=True)
    if not results:
        rec = FederationRecord(config=fed.to_dict(), status="failed", error="the ServerApp never finished")
        rec.save(out)
        return rec
    return results[0]
