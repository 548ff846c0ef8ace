"""Plug-ins: installed packages that add modalities, encoders or other registry entries.

A package declares an entry point in the `crossalign.plugins` group whose target is a function
taking no arguments (or a module); it is called once, the first time a registry is asked for its
names, and registers what it brings (`crossalign.modalities.register`,
`crossalign.encoders.register`). In pyproject.toml:

    [project.entry-points."crossalign.plugins"]
    vector = "crossalign_vector:register"

A plug-in that fails to load is an error naming it, not a silently missing modality.
"""

from __future__ import annotations

import threading
from importlib.metadata import entry_points

__all__ = ["GROUP", "load_plugins"]

GROUP = "crossalign.plugins"
_lock = threading.RLock()  # re-entrant: a plug-in's register() asks the registries it extends
_state = {"loaded": False}


def load_plugins() -> None:
    """Call every installed plug-in's entry point once per process."""
    if _state["loaded"]:
        return
    with _lock:
        if _state["loaded"]:
            return
        _state["loaded"] = True  # first: registering calls back into the registries
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            try:
                target = ep.load()
                if callable(target):
                    target()
            except Exception as e:
                _state["loaded"] = False  # every later use fails the same way, never half-silently
                raise RuntimeError(f"crossalign plug-in '{ep.name}' ({ep.value}) failed to load: {e}") from e
