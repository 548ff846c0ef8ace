"""Run a federation as real separate processes: `flower-superlink`, one `flower-supernode` per
site, and `flwr run` submitting the crossalign Flower App (on this machine; docs/federated.md
shows the same commands across machines with TLS).

Flower state goes to a temporary FLWR_HOME (its connection file names our SuperLink); every
process started here is stopped by its PID at the end, whatever happened. `flwr run` exits 0 even
when every site failed, so the outcome is read from `federation.json` only.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from crossalign.federate.config import FederationConfig
from crossalign.federate.procs import terminate_then_kill
from crossalign.federate.record import FederationRecord

__all__ = ["run_deployed", "APP_PYPROJECT", "write_app"]

log = logging.getLogger(__name__)

APP_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "crossalign-federation"
version = "1.0.0"
description = "crossalign federated alignment; the code is the crossalign package installed at each site"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "crossalign"

[tool.flwr.app.components]
serverapp = "crossalign.federate.server:server_app"
clientapp = "crossalign.federate.client:client_app"

[tool.flwr.app.config]
config = ""
out = ""
"""


def write_app(folder: Path) -> Path:
    """The Flower App folder `flwr run` ships: only a pyproject naming our ServerApp/ClientApp."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(APP_PYPROJECT)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """Terminate each process we started and its children, by PID; kill what outlives the grace."""
    import psutil

    tree = []
    for p in procs:
        try:
            tree += [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    terminate_then_kill(tree, grace)
    for p in procs:
        if p.poll() is None:
            p.wait(timeout=grace)


def run_deployed(fed: FederationConfig, out: str | Path, *, timeout: float = 3600.0,
                 logs: Path | None = None) -> FederationRecord:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "federation.json").unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="crossalign-flwr-deploy-"))
    logs = logs or out / "flower-logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "pids.txt").unlink(missing_ok=True)
    fed.run.train.out = str(out)
    cfg = fed.run.to_dict() | {"federation": {k: v for k, v in fed.to_dict().items() if k != "run"}}
    (out / "federation-config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    home = work / "flwr-home"
    home.mkdir()
    link = _free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "crossalign"\n\n[superlink.crossalign]\n'
                                      f'address = "127.0.0.1:{link}"\ninsecure = true\n')
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    src = str(Path(__file__).resolve().parents[2])  # the crossalign the sites import (editable or not)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        f = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed when the process is reaped
        p = subprocess.Popen([os.path.join(bindir, args[0]), *args[1:]], env=env, stdout=f, stderr=subprocess.STDOUT,
                             cwd=work)
        procs.append(p)
        with open(logs / "pids.txt", "a") as pf:
            pf.write(f"{name} {p.pid}\n")
        log.info("started %s (pid %d)", name, p.pid)
        return p

    try:
        sl = start("superlink", "flower-superlink", "--insecure", "--port", str(link),
                   "--database", str(work / "state.db"))
        _wait_port(link, sl, 120)
        for s in range(fed.sites):
            port = _free_port()
            sn = start(f"supernode-{s}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                       "--node-config", f"partition-id={s} num-partitions={fed.sites}", "--port", str(port))
            _wait_port(port, sn, 120)
        app = write_app(work / "app")
        run = start("flwr-run", "flwr", "run", str(app), "crossalign", "--stream", "--run-config",
                    f'config="{out / "federation-config.yaml"}" out="{out}"')
        try:
            run.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("flwr run did not finish within %.0f s", timeout)
        log.info("flwr run exited with %s (not trusted: the record decides)", run.returncode)
    finally:
        _stop(procs)
        shutil.rmtree(work, ignore_errors=True)
    rec_path = out / "federation.json"
    if not rec_path.exists():
        rec = FederationRecord(config=fed.to_dict(), status="failed",
                               error=f"the ServerApp wrote no federation.json (logs in {logs})")
        rec.save(out)
        return rec
    import json

    d = json.loads(rec_path.read_text())
    return FederationRecord(config=d["config"], rounds=d["rounds"], status=d["status"], error=d["error"],
                            privacy=d["privacy"], statistics=d["statistics"], best_round=d["best_round"],
                            seconds=d["seconds"])
