"""The bridge's typed config, saved as `bridge.json` beside the projector weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

__all__ = ["BridgeConfig", "load_bridge_config"]

BRIDGE_FORMAT = 1
META_KEYS = ("dim", "lm_hidden", "train")


@dataclass
class BridgeConfig:
    run: str = ""  # the crossalign run whose shared space feeds the projector
    lm: str = "smollm2"  # `smollm2` (packaged) or `hf:<id or folder>`
    projector: Literal["linear", "mlp"] = "mlp"  # LLaVA-1.5 uses a 2-layer MLP
    prefix_tokens: int = 4  # k vectors placed before the prompt tokens
    hidden: int = 1024  # MLP width
    train_columns: list[str] = field(default_factory=lambda: ["image"])  # views whose embeddings train it
    tasks: list[str] = field(default_factory=lambda: ["caption", "qa"])
    qa_per_row: int = 1  # question-answer pairs drawn per training row (per epoch order, fixed)
    max_rows: int = 0  # training rows used (0: all); CPU time scales with it
    system: str = "Answer about the input."  # short on purpose: every token costs CPU time per step
    epochs: int = 1
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: float = 0.05
    lora_r: int = 0  # > 0: second stage with LoRA on the LM's attention (projector keeps training)
    lora_alpha: int = 16
    lora_epochs: int = 1
    lora_lr: float = 5e-4
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    val_rows: int = 24  # validation rows for the per-epoch teacher-forced loss (kept small: CPU)
    max_new_tokens: int = 48
    seed: int = 0
    autocast_bf16: bool = True  # bf16 autocast for the frozen LM on CPU (about 2x faster where supported)

    def __post_init__(self) -> None:
        if self.projector not in ("linear", "mlp"):
            raise ValueError(f"projector must be linear or mlp, not {self.projector!r}")
        if self.prefix_tokens < 1 or self.hidden < 1:
            raise ValueError("prefix_tokens >= 1 and hidden >= 1")
        bad = [t for t in self.tasks if t not in ("caption", "qa")]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of caption, qa (got {self.tasks})")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.lora_r < 0:
            raise ValueError("epochs >= 1, batch_size >= 1, lr > 0, lora_r >= 0")
        if not self.train_columns:
            raise ValueError("train_columns needs at least one view column")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"format": BRIDGE_FORMAT}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BridgeConfig":
        d = dict(d)
        d.pop("format", None)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown bridge config fields: {sorted(unknown)}")
        return cls(**d)


def load_bridge_config(folder: str | Path) -> BridgeConfig:
    f = Path(folder) / "bridge.json"
    if not f.exists():
        raise FileNotFoundError(f"{folder}: not a crossalign bridge (no bridge.json)")
    d = json.loads(f.read_text())
    for k in META_KEYS:  # facts written beside the config (dims, training stats), not settings
        d.pop(k, None)
    return BridgeConfig.from_dict(d)
