"""Language-model bridge: a run's shared-space embedding -> k prefix vectors -> a frozen causal LM.

    from crossalign.bridge import Bridge
    b = Bridge.load("runs/demo/run/bridge")
    for piece in b.ask("image", "scene.png", "What colour is the large shape?"):
        print(piece, end="", flush=True)
"""

from __future__ import annotations

from pathlib import Path

from crossalign.bridge.config import BridgeConfig, load_bridge_config
from crossalign.bridge.evaluate import evaluate_bridge, format_table
from crossalign.bridge.lm import DEFAULT_LM, LanguageModel, load_lm
from crossalign.bridge.model import Bridge
from crossalign.bridge.projector import PrefixProjector

__all__ = ["Bridge", "BridgeConfig", "LanguageModel", "PrefixProjector", "DEFAULT_LM", "evaluate_bridge",
           "find_bridge", "format_table", "load_bridge_config", "load_lm", "ask"]


def find_bridge(path: str | Path) -> Path:
    """A bridge folder itself, or a run folder with the default `bridge/` inside."""
    p = Path(path)
    for cand in (p, p / "bridge"):
        if (cand / "bridge.json").exists():
            return cand
    raise FileNotFoundError(f"{p}: no bridge here (no bridge.json in it or in {p / 'bridge'}); "
                            f"train one with: crossalign bridge train {p} --data DATA")


def ask(bridge: str | Path | Bridge, *, image: object = None, audio: object = None, sensor: object = None,
        text: str | None = None, max_new_tokens: int | None = None):  # type: ignore[no-untyped-def]
    """Python mirror of `crossalign ask`: exactly one input, an optional question; yields text pieces."""
    given = [(m, v) for m, v in (("image", image), ("audio", audio), ("sensor", sensor)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of image=, audio=, sensor=")
    b = bridge if isinstance(bridge, Bridge) else Bridge.load(find_bridge(bridge))
    return b.ask(given[0][0], given[0][1], text, max_new_tokens=max_new_tokens)
