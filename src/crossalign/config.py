"""Typed configs shared by the CLI, YAML files and the Python API.

A YAML config mirrors `RunConfig`: `model:` holds `ModelConfig` fields and `train:` holds
`TrainConfig` fields. Every dataclass validates itself on construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from crossalign.data.features import ViewSpec

__all__ = ["TowerTuning", "HeadConfig", "ModelConfig", "TrainConfig", "RunConfig", "OBJECTIVES", "load_config"]

OBJECTIVES = ("infonce", "siglip", "siglip-chunked", "tri-sigmoid", "tri-sigmoid-neg", "cosine")


@dataclass
class TowerTuning:
    method: Literal["lora", "unfreeze"] = "lora"  # low-rank adapters, or train the blocks' own weights
    last_blocks: int = 2  # how many of the tower's last blocks (transformer layers, MBConv blocks) take part
    r: int = 8  # LoRA rank
    alpha: float = 16.0  # LoRA scaling numerator (update = alpha / r * B A)
    dropout: float = 0.0  # dropout on the LoRA branch input
    targets: list[str] = field(default_factory=list)  # module names inside a block; empty: family default

    def __post_init__(self) -> None:
        if self.method not in ("lora", "unfreeze"):
            raise ValueError(f"tower_tuning.method must be lora or unfreeze, not {self.method!r}")
        if self.last_blocks < 1 or self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError("tower_tuning: last_blocks >= 1, r >= 1, alpha > 0, 0 <= dropout < 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HeadConfig:
    kind: Literal["linear", "mlp"] = "mlp"  # projection head type
    hidden: int = 1024  # MLP width
    depth: int = 1  # hidden layers in the MLP
    dropout: float = 0.1  # dropout inside the MLP (and on token inputs)
    tokens: Literal["flatten", "mean"] = "flatten"  # how (T, D) token features enter the head
    token_dim: int = 128  # with tokens="flatten": shared per-token projection D -> token_dim first (0: none)
    # A gated residual linear map from the view's standardised input, added before normalising: it
    # holds the closed-form (CCA / ridge) start, and the head learns what a linear map cannot.
    linear_path: bool = False
    # {column: [p, m]}: that view's linear path reads Nyström RBF features (p principal axes, m
    # landmarks) instead of its input: it holds a kernel CCA start (set by train.start, not by hand).
    kernel: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "mlp"):
            raise ValueError(f"head.kind must be linear or mlp, not {self.kind!r}")
        if self.hidden < 1 or self.depth < 1 or not 0 <= self.dropout < 1:
            raise ValueError("head: hidden >= 1, depth >= 1, 0 <= dropout < 1")


@dataclass
class ModelConfig:
    views: list[ViewSpec] = field(default_factory=list)  # one per manifest column
    dim: int = 256  # shared space dimension
    head: HeadConfig = field(default_factory=HeadConfig)
    pairing: Literal["all", "anchor"] = "all"  # all pairs of views, or bind every view to `anchor`
    anchor: str | None = None  # anchor column for pairing="anchor" and the tri-modal objectives
    pair_weights: dict[str, float] = field(default_factory=dict)  # "image-text": 2.0
    objective: str = "infonce"
    temperature: float = 0.07  # initial; learnable logit scale = 1 / temperature
    max_logit_scale: float = 100.0
    learn_temperature: bool = True
    siglip_bias: float = -10.0  # initial learnable bias of sigmoid objectives
    train_towers: list[str] = field(default_factory=list)  # pretrained towers fine-tuned end to end
    # Per trained tower: LoRA adapters or partial unfreezing (TowerTuning fields; applied by align/lora.py).
    tower_tuning: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.views = [v if isinstance(v, ViewSpec) else ViewSpec(**v) for v in self.views]
        if isinstance(self.head, dict):
            self.head = HeadConfig(**self.head)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, not {self.objective!r}")
        if self.pairing not in ("all", "anchor"):
            raise ValueError("pairing must be 'all' or 'anchor'")
        cols = [v.column for v in self.views]
        if len(set(cols)) != len(cols):
            raise ValueError(f"duplicate view columns: {cols}")
        if self.anchor is not None and self.views and self.anchor not in cols:
            raise ValueError(f"anchor '{self.anchor}' is not one of the views {cols}")
        if self.objective.startswith("tri-") and self.views and len(self.views) != 3:
            raise ValueError("tri-sigmoid objectives take exactly three views (the anchor plus two)")
        for col, t in self.tower_tuning.items():
            if col not in self.train_towers:
                raise ValueError(f"tower_tuning['{col}'] needs '{col}' in train_towers")
            TowerTuning(**t)  # validates the fields now, not when the tower is built
        if self.dim < 2 or not 0 < self.temperature < 10:
            raise ValueError("dim >= 2 and 0 < temperature < 10")

    @property
    def columns(self) -> list[str]:
        return [v.column for v in self.views]

    def pairs(self) -> list[tuple[str, str, float]]:
        cols = self.columns
        if self.pairing == "anchor" or self.objective.startswith("tri-"):
            anchor = self.anchor or cols[0]
            out = [(anchor, c) for c in cols if c != anchor]
        else:
            out = [(a, b) for i, a in enumerate(cols) for b in cols[i + 1:]]
        return [(a, b, float(self.pair_weights.get(f"{a}-{b}", self.pair_weights.get(f"{b}-{a}", 1.0))))
                for a, b in out]


@dataclass
class TrainConfig:
    data: str = ""  # manifest path or folder
    out: str = "runs/run"  # run folder
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of all steps spent warming up linearly
    grad_clip: float = 1.0
    seed: int = 0
    patience: int = 8  # epochs without validation improvement before stopping (0: never)
    primary: str = "mean/R@1"  # validation metric that picks the best checkpoint
    tower_lr: float = 2e-5  # learning rate of fine-tuned pretrained towers
    train_split: str = "train"
    val_split: str = "val"
    encode_batch_size: int = 32
    progress: bool = True
    grad_cache_chunk: int = 0  # >0: GradCache, towers run this many items at a time (memory), same gradients
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast forward (GPUs with bf16, and CPUs)
    # Candidates chosen on validation: "auto" = closed form as-is, heads fine-tuned from it, and heads
    # trained from scratch; "closed_form" = the first two; "scratch" = the last only.
    start: Literal["auto", "closed_form", "scratch"] = "auto"
    finetune_epochs: int = 0  # epochs of the candidate fine-tuned from the closed form (0: half of `epochs`)
    linear_path_lr: float = 0.1  # learning rate of the closed-form linear paths, relative to `lr`
    small_data: bool = True  # below 5000 train rows: batch, patience and head width scaled to the rows

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError("epochs >= 1, batch_size >= 2, lr > 0")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision must be fp32 or bf16, not {self.precision!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError("0 <= warmup < 1")
        if self.start not in ("auto", "closed_form", "scratch"):
            raise ValueError(f"train.start must be auto, closed_form or scratch, not {self.start!r}")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if isinstance(self.train, dict):
            self.train = TrainConfig(**self.train)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config sections: {sorted(unknown)} (expected {sorted(known)})")
        return cls(**d)


def load_config(path: str | Path) -> RunConfig:
    with open(path, encoding="utf-8") as f:
        d = yaml.safe_load(f) or {}
    try:
        return RunConfig.from_dict(d)
    except TypeError as e:  # unknown field inside a section
        raise ValueError(f"{path}: {e}") from e
