"""`crossalign <command> ... --nproc N`: run the same command under torchrun on this machine.

No home-made process management: this builds the torchrun command line (`python -m
torch.distributed.run --standalone --nproc_per_node N -m crossalign <command> ...`) and runs it as
one subprocess; torchrun starts, watches and (with `max_restarts`) restarts the workers, and the
workers join the process group from torchrun's environment (`train.distributed.init_from_env`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["launch", "relaunch_self", "strip_option", "torchrun_command"]

log = logging.getLogger(__name__)


def strip_option(argv: Sequence[str], name: str) -> list[str]:
    """argv without `name VALUE` / `name=VALUE` (so the workers do not launch again)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return out


def torchrun_command(args: Sequence[str], nproc: int, *, max_restarts: int = 0, module: str = "crossalign",
                     nnodes: int = 1, rdzv_endpoint: str | None = None, rdzv_id: str = "crossalign") -> list[str]:
    """The torchrun command line that runs `python -m <module> <args>` on `nproc` local workers.

    One machine: `--standalone` (a private rendezvous on a free local port). Several machines: the
    same command on every node with `nnodes` and a shared `rdzv_endpoint` host:port (c10d backend).
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--max_restarts={max_restarts}"]
    if nnodes > 1 or rdzv_endpoint:
        if not rdzv_endpoint:
            raise ValueError("several nodes need a rendezvous endpoint host:port")
        cmd += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}",
                f"--rdzv_id={rdzv_id}"]
    else:
        cmd.append("--standalone")
    return cmd + ["-m", module, *args]


def launch(args: Sequence[str], nproc: int, *, max_restarts: int = 0, env: dict[str, str] | None = None,
           **kw: object) -> int:
    """Run the command under torchrun and wait; returns torchrun's exit code."""
    cmd = torchrun_command(args, nproc, max_restarts=max_restarts, **kw)  # type: ignore[arg-type]
    log.info("launching: %s", " ".join(cmd))
    full_env = {**os.environ, **(env or {})}
    # Each worker gets an equal share of the cores; without this every worker starts one thread per
    # core and they oversubscribe the machine.
    full_env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=full_env)


def relaunch_self(nproc: int, *, max_restarts: int = 0, fresh_out: Path | None = None) -> int:
    """Re-run this very `crossalign ...` invocation under torchrun, minus `--nproc`.

    `fresh_out`: a run folder whose checkpoint state is discarded now, once, instead of passing
    `--fresh` to the workers: a worker that torchrun restarts must resume, not start over."""
    args = strip_option(strip_option(sys.argv[1:], "--nproc"), "--max-restarts")
    if fresh_out is not None:
        args = [a for a in args if a != "--fresh"]
        for name in ("last_state.pt", "last.safetensors"):
            (fresh_out / name).unlink(missing_ok=True)
    return launch(args, nproc, max_restarts=max_restarts)
