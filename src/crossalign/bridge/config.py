"""The bridge's typed config, saved as `bridge.json` beside the projector weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from crossalign.config import ConfigBase, TrainConfig
from crossalign.saved import read_json

__all__ = ["BridgeConfig", "load_bridge_config", "BRIDGE_FORMAT"]

BRIDGE_FORMAT = 1
# Facts written beside the settings in bridge.json (dims, training stats); `stats` was called
# `train` before the loop settings took that name (see `load_bridge_config`).
META_KEYS = ("format", "dim", "lm_hidden", "stats")


def _bridge_train() -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=16, lr=2e-3, weight_decay=0.0, warmup=0.05, patience=0, progress=False)


@dataclass
class BridgeConfig(ConfigBase):
    run: str = ""  # the crossalign run whose shared space feeds the projector
    lm: str = "smollm2"  # `smollm2` (packaged) or `hf:<id or folder>`
    projector: Literal["linear", "mlp", "slots"] = "mlp"  # LLaVA-1.5 uses a 2-layer MLP; slots: see slots.py
    prefix_tokens: int = 4  # k vectors placed before the prompt tokens (linear, mlp)
    slots: int = 3  # `slots` projector: objects spelled out (5 word vectors each) ...
    free_tokens: int = 4  # ... then this many learned vectors
    slot_epochs: int = 300  # cheap attribute pre-training of the slot heads on every training row (no LM)
    aux_weight: float = 1.0  # the slot heads' attribute loss beside the LM loss while the LM trains them
    hidden: int = 1024  # MLP width
    train_columns: list[str] = field(default_factory=lambda: ["image"])  # views whose embeddings train it
    # `slots`: views whose embeddings the attribute heads pre-train on ([]: every view of the run).
    # The heads are cheap (no LM) and the prefix they make is LM words whatever the input, so
    # fitting them on audio too lets the LM steps stay on `train_columns` while audio in is read
    # right (benchmarks/bridge_ceiling.py: audio 0.655 with heads on image only, 0.902 on all views).
    head_columns: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=lambda: ["caption", "qa"])
    loss_per_example: bool = True  # mean per answer, then over answers: short QA answers count as much as captions
    qa_per_row: int = 1  # question-answer pairs drawn per training row (per epoch order, fixed)
    max_rows: int = 0  # training rows used (0: all); CPU time scales with it
    system: str = "Answer about the input."  # short on purpose: every token costs CPU time per step
    # The loop of stage 1 (stage 2 takes its epochs and learning rates from the lora_* fields).
    train: TrainConfig = field(default_factory=_bridge_train)
    lora_r: int = 0  # > 0: second stage with LoRA on the LM's attention (projector keeps training)
    lora_stage: Literal["after", "joint"] = "after"  # joint: LoRA trains with the projector in stage 1
    lora_alpha: int = 16
    lora_epochs: int = 1
    lora_lr: float = 5e-4
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    # > 0 (slots + LoRA): freeze the projector after its attribute pre-training, run the LM's bottom
    # `cache_layers` layers once per example and train LoRA on the layers above only (bridge/cached.py)
    cache_layers: int = 0
    val_rows: int = 24  # validation rows for the per-epoch teacher-forced loss (kept small: CPU)
    max_new_tokens: int = 48
    autocast_bf16: bool = True  # bf16 autocast for the frozen LM; used only where the CPU has native bf16
    MOVED: ClassVar[dict[str, str]] = {k: f"train.{k}" for k in  # bridge.json written before `train`
                                       ("epochs", "batch_size", "lr", "weight_decay", "warmup", "seed")}
    IGNORED: ClassVar[tuple[str, ...]] = META_KEYS

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict({**_bridge_train().to_dict(), **self.train}, "BridgeConfig.train")
        if self.projector not in ("linear", "mlp", "slots"):
            raise ValueError(f"projector must be linear, mlp or slots, not {self.projector!r}")
        if self.prefix_tokens < 1 or self.hidden < 1 or self.slots < 1 or self.free_tokens < 0:
            raise ValueError("prefix_tokens >= 1, hidden >= 1, slots >= 1 and free_tokens >= 0")
        bad = [t for t in self.tasks if t not in ("caption", "qa")]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of caption, qa (got {self.tasks})")
        if self.lora_r < 0:
            raise ValueError("lora_r >= 0")
        if self.lora_stage not in ("after", "joint"):
            raise ValueError(f"lora_stage must be after or joint, not {self.lora_stage!r}")
        if self.cache_layers < 0:
            raise ValueError("cache_layers >= 0")
        if self.cache_layers and (self.projector != "slots" or not self.lora_r):
            raise ValueError("cache_layers needs projector 'slots' (its heads train without the LM) and lora_r > 0 "
                             "(the adapters on the layers above are what trains)")
        if not self.train_columns:
            raise ValueError("train_columns needs at least one view column")

    @property
    def seed(self) -> int:
        """The bridge's seed (projector init, example order and the loop follow `train.seed`)."""
        return self.train.seed

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"format": BRIDGE_FORMAT}


def load_bridge_config(folder: str | Path) -> BridgeConfig:
    d = read_json(Path(folder) / "bridge.json", what="a crossalign bridge")
    if isinstance(d.get("train"), dict) and "rows" in d["train"]:  # written before: training stats, not settings
        d["stats"] = d.pop("train")
    return BridgeConfig.from_dict(d, f"{folder}/bridge.json")
