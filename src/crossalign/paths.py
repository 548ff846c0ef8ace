"""One cache root for everything crossalign writes on its own (features, converted models)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """`$CROSSALIGN_CACHE`, else `$XDG_CACHE_HOME/crossalign`, else `~/.cache/crossalign`."""
    env = os.environ.get("CROSSALIGN_CACHE")
    if env:
        root = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "crossalign"
    root.mkdir(parents=True, exist_ok=True)
    return root
