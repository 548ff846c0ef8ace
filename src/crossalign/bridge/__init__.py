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
           "find_bridge", "format_table", "load_bridge_config", "load_lm", "ask", "ask_modalities"]


def find_bridge(path: str | Path) -> Path:
    """A bridge folder itself, or a run folder with the default `bridge/` inside."""
    p = Path(path)
    for cand in (p, p / "bridge"):
        if (cand / "bridge.json").exists():
            return cand
    raise FileNotFoundError(f"{p}: no bridge here (no bridge.json in it or in {p / 'bridge'}); "
                            f"train one with: crossalign bridge train {p} --data DATA")


def ask_modalities() -> tuple[str, ...]:
    """What the language model can be asked about: every registered modality but inline ones (text:
    the question is the text)."""
    from crossalign.modalities import modality, modality_names

    return tuple(m for m in modality_names() if not modality(m).inline)


def ask(bridge: str | Path | Bridge, *, text: str | None = None, max_new_tokens: int | None = None,
        **items: object):  # type: ignore[no-untyped-def]
    """Python mirror of `crossalign ask`: exactly one item as `MODALITY=value` (`image="scene.png"`,
    `audio=...`, `sensor=...` or another registered modality), an optional question; yields text."""
    kinds = ask_modalities()
    unknown = [m for m in items if m not in kinds]
    if unknown:
        raise ValueError(f"unknown input {', '.join(unknown)}= (use one of {', '.join(kinds)})")
    given = [(m, v) for m, v in items.items() if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(f'{m}=' for m in kinds)}")
    b = bridge if isinstance(bridge, Bridge) else Bridge.load(find_bridge(bridge))
    return b.ask(given[0][0], given[0][1], text, max_new_tokens=max_new_tokens)
