"""Typed configs shared by the CLI, YAML files and the Python API.

A YAML config mirrors `RunConfig`: `model:` holds `ModelConfig` fields and `train:` holds
`AlignTrainConfig` fields. Every dataclass validates itself on construction. This module is a
leaf: it imports no other crossalign room (facts that need a registry, such as which objective
names exist or which encoder a column gets, are checked where the registry lives).

`ConfigBase` gives every config of the project (task, bridge, semi, federation too) one
`from_dict`: unknown keys are an error naming the key and the config, nested configs are built
from their sections, and keys that moved (old saved runs) are mapped by a declared table.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml

__all__ = ["ConfigBase", "ConfigError", "ViewSpec", "TowerTuning", "HeadConfig", "ModelConfig", "TrainConfig",
           "AlignTrainConfig", "RunConfig", "load_config"]

C = TypeVar("C", bound="ConfigBase")


class ConfigError(ValueError):
    """A config that cannot be built: names the config (and section) and the key."""


class ConfigBase:
    """Mixin for config dataclasses: `from_dict` / `to_dict`.

    `MOVED` maps keys of older saved configs to where they live now ("epochs" -> "train.epochs"),
    so folders written before a field moved still load; `IGNORED` are keys written beside the
    settings (a format number, facts about the run) that loading skips."""

    MOVED: ClassVar[dict[str, str]] = {}
    IGNORED: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any] | None, where: str = "") -> C:
        where = where or cls.__name__
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(d).__name__}")
        d = {k: v for k, v in d.items() if k not in cls.IGNORED}
        d = _apply_moves(cls, d, where)
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = [k for k in d if k not in known]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}"
                              + (f" (and {unknown[1:]})" if len(unknown) > 1 else "")
                              + f"; {cls.__name__} takes {', '.join(known)}")
        hints = typing.get_type_hints(cls)
        kwargs = {k: _build(hints[k], known[k], v, f"{where}.{k}") for k, v in d.items()}
        try:
            return cls(**kwargs)
        except TypeError as e:  # a field given the wrong kind of value
            raise ConfigError(f"{where}: {e}") from e


def _apply_moves(cls: type[ConfigBase], d: dict[str, Any], where: str) -> dict[str, Any]:
    """Old flat keys -> their nested place; the same setting given twice (old and new) must agree."""
    for old, new in cls.MOVED.items():
        if old not in d:
            continue
        section, _, key = new.partition(".")
        sub = d.get(section)
        sub = sub.to_dict() if isinstance(sub, ConfigBase) else dict(sub) if isinstance(sub, Mapping) else {}
        if key in sub and sub[key] != d[old]:
            raise ConfigError(f"{where}: {old!r} (older spelling of {new!r}) is {d[old]!r} but {new!r} is "
                              f"{sub[key]!r}; give one")
        sub[key] = d.pop(old)
        d[section] = sub
    return d


def _build(tp: Any, f: Any, value: Any, where: str) -> Any:
    """A nested section (a mapping for a ConfigBase field, or a list of them) -> its dataclass."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, ConfigBase):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping) and f is not None and f.default_factory is not MISSING:
            # a partial section overlays this field's own defaults (a task's train defaults are not a run's)
            default = f.default_factory()
            if is_dataclass(default) and isinstance(default, ConfigBase):
                return type(default).from_dict({**default.to_dict(), **value}, where)
        return tp.from_dict(value, where)
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], ConfigBase) \
            and isinstance(value, list):
        return [_build(args[0], None, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


@dataclass
class ViewSpec(ConfigBase):
    """One manifest column to encode: which encoder, with which options. Which modality and encoder
    an unset field resolves to is decided in `data/` (`view_modality`, `view_encoder`)."""

    column: str
    encoder: str | None = None  # registry name; None -> chosen from the column's name and content
    options: dict[str, Any] = field(default_factory=dict)
    modality: str | None = None  # None -> from the column name (text_zh -> text)
    why: str = ""  # why this encoder (filled when it is chosen; recorded in the run's config)


@dataclass
class TowerTuning(ConfigBase):
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

@dataclass
class HeadConfig(ConfigBase):
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
class ModelConfig(ConfigBase):
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
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"a|b": {"method": ..}}: set by train.route
    hubness: dict[str, Any] = field(default_factory=dict)  # CSLS per pair, set by train.hubness (align/hubness.py)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # {NAME: {"head": ..}}: align/model.py

    def __post_init__(self) -> None:
        self.views = [v if isinstance(v, ViewSpec) else ViewSpec.from_dict(v, f"model.views[{i}]")
                      for i, v in enumerate(self.views)]
        if isinstance(self.head, Mapping):
            self.head = HeadConfig.from_dict(self.head, "model.head")
        # objective name and view count: align/objectives.py `check_objective` (this module knows no registry)
        if self.pairing not in ("all", "anchor"):
            raise ValueError("pairing must be 'all' or 'anchor'")
        cols = [v.column for v in self.views]
        if len(set(cols)) != len(cols):
            raise ValueError(f"duplicate view columns: {cols}")
        if self.anchor is not None and self.views and self.anchor not in cols:
            raise ValueError(f"anchor '{self.anchor}' is not one of the views {cols}")
        for col, t in self.tower_tuning.items():
            if col not in self.train_towers:
                raise ValueError(f"tower_tuning['{col}'] needs '{col}' in train_towers")
            TowerTuning.from_dict(t, f"model.tower_tuning.{col}")  # validated now, not when the tower is built
        if self.dim < 2 or not 0 < self.temperature < 10:
            raise ValueError("dim >= 2 and 0 < temperature < 10")
        for key, r in self.routes.items():  # the methods are align/routes.py's to check
            if len(set(key.split("|")) & set(cols)) != 2 or not isinstance(r, Mapping) or "method" not in r:
                raise ValueError(f"model.routes['{key}']: 'a|b' of two views {cols} -> {{'method': ...}}")

    @property
    def columns(self) -> list[str]:
        return [v.column for v in self.views]

    def pairs(self, anchored: bool = False) -> list[tuple[str, str, float]]:
        """The (a, b, weight) view pairs the objective scores. `anchored`: the objective binds every
        view to the anchor whatever `pairing` says (its registry entry declares it; use
        `align.objectives.objective_pairs(cfg)`)."""
        cols = self.columns
        if self.pairing == "anchor" or anchored:
            anchor = self.anchor or cols[0]
            out = [(anchor, c) for c in cols if c != anchor]
        else:
            out = [(a, b) for i, a in enumerate(cols) for b in cols[i + 1:]]
        return [(a, b, float(self.pair_weights.get(f"{a}-{b}", self.pair_weights.get(f"{b}-{a}", 1.0))))
                for a, b in out]


@dataclass
class TrainConfig(ConfigBase):
    """The training loop's settings, the same for every job that trains (alignment, fusion tasks,
    the LLM bridge, federated sites). `trainer_kwargs()` turns them into `Trainer` arguments."""

    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of all steps spent warming up linearly
    grad_clip: float = 1.0
    seed: int = 0
    patience: int = 8  # epochs without validation improvement before stopping (0: never)
    progress: bool = True
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast forward (GPUs with bf16, and CPUs)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs >= 1, batch_size >= 1, lr > 0")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision must be fp32 or bf16, not {self.precision!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError("0 <= warmup < 1")
        if self.patience < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("patience, grad_clip and weight_decay must be >= 0")

    def trainer_kwargs(self, n_train: int | None = None, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of `train.trainer.Trainer` (after `task` and `out`). `n_train`: the
        batch never exceeds the training items; `overrides` win (a stage's own epochs, say)."""
        kw: dict[str, Any] = {k: getattr(self, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "warmup",
                                                           "grad_clip", "seed", "patience", "progress", "precision")}
        kw.update(overrides)
        if n_train is not None:
            kw["batch_size"] = min(kw["batch_size"], n_train)
        return kw


@dataclass
class AlignTrainConfig(TrainConfig):
    """`TrainConfig` plus what only alignment training has (the `train:` section of a run)."""

    data: str = ""  # manifest path or folder
    out: str = "runs/run"  # run folder
    primary: str = "mean/R@1"  # validation metric that picks the best checkpoint
    tower_lr: float = 2e-5  # learning rate of fine-tuned pretrained towers
    train_split: str = "train"
    val_split: str = "val"
    encode_batch_size: int = 32
    grad_cache_chunk: int = 0  # >0: GradCache, towers run this many items at a time (memory), same gradients
    # Candidates chosen on validation: "auto" = closed form as-is, heads fine-tuned from it, and heads
    # trained from scratch; "closed_form" = the first two; "scratch" = the last only.
    start: Literal["auto", "closed_form", "scratch"] = "auto"
    finetune_epochs: int = 0  # epochs of the candidate fine-tuned from the closed form (0: half of `epochs`)
    linear_path_lr: float = 0.1  # learning rate of the closed-form linear paths, relative to `lr`
    small_data: bool = True  # below 5000 train rows: batch, patience and head width scaled to the rows
    route: Literal["auto", "single", "off"] = "auto"  # per pair: best candidate or mixture | no mixtures | off
    hubness: Literal["auto", "off"] = "auto"  # per pair: CSLS hubness correction where validation gains

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError("epochs >= 1, batch_size >= 2, lr > 0")
        super().__post_init__()
        for name, ok in (("start", ("auto", "closed_form", "scratch")), ("route", ("auto", "single", "off")),
                         ("hubness", ("auto", "off"))):
            if getattr(self, name) not in ok:
                raise ValueError(f"train.{name} must be {', '.join(ok[:-1])} or {ok[-1]}, not {getattr(self, name)!r}")


@dataclass
class RunConfig(ConfigBase):
    model: ModelConfig = field(default_factory=ModelConfig)
    train: AlignTrainConfig = field(default_factory=AlignTrainConfig)
    IGNORED: ClassVar[tuple[str, ...]] = ("format",)  # written into a run's config.json

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            self.model = ModelConfig.from_dict(self.model, "model")
        if isinstance(self.train, Mapping):
            self.train = AlignTrainConfig.from_dict(self.train, "train")


def load_config(path: str | Path) -> RunConfig:
    with open(path, encoding="utf-8") as f:
        d = yaml.safe_load(f) or {}
    try:
        return RunConfig.from_dict(d)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from e
