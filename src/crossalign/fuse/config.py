"""`TaskConfig`: one typed config for a fusion task run (CLI options, YAML files and Python API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from crossalign.config import ConfigBase, TrainConfig, ViewSpec

__all__ = ["DEFAULT_ALIGN_VIEWS", "DEFAULT_TOKEN_VIEWS", "TaskConfig", "load_task_config"]

# Pooled views for the alignment model when no run is given to --init (a run brings its own).
# No encoder named: each is chosen from the column's name and content (data/encoder_choice.py;
# the sensor tower by the arrays' rank, conv2d for the scenes' 2-D maps).
DEFAULT_ALIGN_VIEWS: dict[str, dict[str, Any]] = {
    "text": {"column": "text"},
    "image": {"column": "image", "options": {"size": 128, "color": True}},
    "audio": {"column": "audio"},
    "sensor": {"column": "sensor"},
}
# Token-level views the fusion layer attends over (a modality missing here enters as one token:
# its aligned embedding).
DEFAULT_TOKEN_VIEWS: dict[str, dict[str, Any]] = {
    "text": {"column": "text", "encoder": "text:minilm", "options": {"words": 32}},
    "image": {"column": "image", "encoder": "image:efficientnet-lite0",
              "options": {"size": 128, "grid": 3, "color": True}},
    "audio": {"column": "audio", "encoder": "audio:whisper-tiny", "options": {"tokens": 12}},
}


def _task_train() -> TrainConfig:
    return TrainConfig(epochs=30, batch_size=64, lr=1e-3, weight_decay=0.01, warmup=0.05, patience=8)


@dataclass
class TaskConfig(ConfigBase):
    task: str = "report-consistency"  # built-in task name, or "custom" (labels/tags from the manifest)
    kind: Literal["classify", "tag", "auto"] = "auto"  # custom tasks: auto = tag if rows have `tags`
    data: str = ""  # scenes manifest (built-in tasks) or a manifest with `label` / `tags` columns
    out: str = "runs/task"  # run folder
    init: str | None = None  # alignment run whose projections initialise the model (pre-training)
    modalities: list[str] = field(default_factory=list)  # manifest columns fused; [] -> task default
    fusion: str = "cross-attention"  # concat | gated | cross-attention
    text_column: str = "text"  # the column whose whitespace words are tagged
    align_columns: dict[str, str] = field(default_factory=dict)  # view -> column fed to the alignment loss
    token_views: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_TOKEN_VIEWS))
    align_views: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_ALIGN_VIEWS))
    align_dim: int = 128  # shared space size when not initialised from a run
    d: int = 64  # fusion width
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    align_weight: float = 0.5  # multi-task: weight of the alignment objective (0 = task loss only)
    task_weight: float = 1.0
    objective: str = "infonce"  # alignment objective when not initialised from a run
    modality_dropout: float = 0.15  # per item and modality, during training: teaches missing inputs
    label_fraction: float = 1.0  # share of the training labels used (learning-curve experiments)
    align_lr: float = 3e-4  # learning rate of the alignment heads/towers inside the model
    # tagging: per-word evidence from the aligned space (fuse/evidence.py): none | occlusion |
    # occlusion-tokens | auto (occlusion-tokens where the text's token view fits it, else none)
    word_evidence: str = "auto"
    train: TrainConfig = field(default_factory=_task_train)  # the training loop (epochs, lr, seed, ...)
    # task.json / YAML files written before the loop settings moved into `train`
    MOVED: ClassVar[dict[str, str]] = {k: f"train.{k}" for k in
                                       ("epochs", "batch_size", "lr", "weight_decay", "patience", "seed", "progress")}

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict({**_task_train().to_dict(), **self.train}, "TaskConfig.train")
        if self.kind not in ("classify", "tag", "auto"):
            raise ValueError(f"kind must be classify, tag or auto, not {self.kind!r}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError("label_fraction must be in (0, 1]")
        if not 0 <= self.modality_dropout < 1:
            raise ValueError("modality_dropout must be in [0, 1)")
        if self.align_weight < 0 or self.task_weight <= 0:
            raise ValueError("align_weight >= 0 and task_weight > 0")
        if self.d % self.heads:
            raise ValueError(f"d ({self.d}) must be divisible by heads ({self.heads})")
        from crossalign.fuse.evidence import WORD_EVIDENCE
        from crossalign.fuse.modules import FUSIONS

        if self.word_evidence not in WORD_EVIDENCE:
            raise ValueError(f"word_evidence must be one of {', '.join(WORD_EVIDENCE)}, not {self.word_evidence!r}")

        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {self.fusion!r}")

    @property
    def seed(self) -> int:
        """The run's seed (rows, splits, label fraction and the loop all follow `train.seed`)."""
        return self.train.seed

    def token_view(self, col: str) -> ViewSpec | None:
        v = self.token_views.get(col)
        return ViewSpec.from_dict({**v, "column": col}, f"token_views.{col}") if v else None


def load_task_config(path: str | Path, **overrides: Any) -> TaskConfig:
    """YAML mirroring `TaskConfig` fields; `overrides` (non-None) win over the file."""
    with open(path, encoding="utf-8") as f:
        d = yaml.safe_load(f) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a mapping of TaskConfig fields")
    d.setdefault("task", "custom")
    for k, v in overrides.items():  # CLI options: the old flat names (epochs, seed) mean train.*
        if v is not None:
            key = TaskConfig.MOVED.get(k, k)
            if key.startswith("train."):
                d.setdefault("train", {})[key[len("train."):]] = v
                d.pop(k, None)
            else:
                d[key] = v
    try:
        return TaskConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e
