"""Task data: manifest -> derived task rows -> cached pooled + token features -> tensors per split."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossalign.data.extract import encode_column
from crossalign.data.features import ViewSpec, build_view_encoder, view_encoder
from crossalign.data.manifest import Manifest, load_manifest, view_modality
from crossalign.encoders import Encoder, EncoderSpec
from crossalign.fuse.config import TaskConfig
from crossalign.fuse.tasks import (
    BUILTIN_TASKS,
    CONSISTENCY_TAGS,
    MASKED_VALUES,
    TAG_OUTSIDE,
    validate_user_rows,
    write_task_manifest,
)

__all__ = ["IGNORE", "PreparedTask", "TaskData", "derive", "prepare_task", "task_modalities", "word_mask"]

log = logging.getLogger(__name__)
IGNORE = -100  # target of padding words (cross-entropy ignore_index)
DEFAULT_MODALITIES = {"report-consistency": ["text", "image"], "masked-attribute": ["text", "image", "audio", "sensor"]}


@dataclass
class TaskData:
    """Row-aligned tensors of one split. `feats` keys: `<col>` pooled input of the alignment view,
    `<col>:tokens` token features, `align:<col>` the alignment loss's input for view <col>."""

    feats: dict[str, torch.Tensor]
    word_mask: torch.Tensor  # (N, W) bool: real words of the text column
    targets: torch.Tensor  # (N,) class ids, or (N, W) tag ids with IGNORE on padding
    groups: torch.Tensor | None  # (N,) positives share a group (alignment loss)
    ids: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: np.ndarray | torch.Tensor) -> TaskData:
        t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return TaskData({k: v[t] for k, v in self.feats.items()}, self.word_mask[t], self.targets[t],
                        self.groups[t] if self.groups is not None else None,
                        [self.ids[i] for i in t.tolist()], [self.texts[i] for i in t.tolist()])


@dataclass
class PreparedTask:
    kind: str  # classify | tag
    classes: list[str]
    modalities: list[str]
    align_views: dict[str, ViewSpec]  # column -> pooled view (what the alignment heads take)
    token_views: dict[str, ViewSpec]  # column -> token view
    specs: dict[str, EncoderSpec]  # "<col>" / "<col>:tokens" -> encoder output spec
    splits: dict[str, TaskData]
    manifest: Manifest
    problems: list[Any] = field(default_factory=list)


def task_modalities(cfg: TaskConfig, m: Manifest) -> list[str]:
    mods = list(cfg.modalities) or DEFAULT_MODALITIES.get(cfg.task) or list(m.modality_columns)
    missing = [c for c in mods if c not in m.columns]
    if missing:
        raise ValueError(f"{m.path}: no column(s) {missing} for the task's modalities; columns are {m.columns}")
    return mods


def word_mask(texts: list[str], width: int) -> torch.Tensor:
    n = torch.tensor([min(len(t.split()), width) for t in texts])
    return torch.arange(width).unsqueeze(0) < n.unsqueeze(1)  # (N, W)


def _load_rows(cfg: TaskConfig, out: Path) -> tuple[Manifest, str]:
    src = load_manifest(cfg.data)
    if cfg.task in BUILTIN_TASKS:
        path = write_task_manifest(src, cfg.task, out / "task_manifest.jsonl", seed=cfg.seed)
        return load_manifest(path), BUILTIN_TASKS[cfg.task]
    if cfg.task != "custom":
        raise ValueError(f"unknown task '{cfg.task}': use {', '.join(BUILTIN_TASKS)} or a task config (custom)")
    kind = cfg.kind
    if kind == "auto":
        kind = "tag" if any(r.get("tags") is not None for r in src.rows) else "classify"
    validate_user_rows(src, kind, cfg.text_column)
    return src, kind


def _classes(cfg: TaskConfig, kind: str, m: Manifest) -> list[str]:
    if cfg.task == "report-consistency":
        return list(CONSISTENCY_TAGS)
    if cfg.task == "masked-attribute":
        return list(MASKED_VALUES)
    vals = {str(t) for r in m.rows for t in (r["tags"] if kind == "tag" else [r["label"]])}
    return sorted(vals, key=lambda v: (v != TAG_OUTSIDE, v))  # the outside tag first, then sorted


def prepare_task(cfg: TaskConfig, align_views: dict[str, ViewSpec] | None = None,
                 progress: bool = False, encoders: dict[str, Encoder] | None = None,
                 classes: list[str] | None = None) -> PreparedTask:
    """Derive/validate rows, encode every view (through the feature cache) and split into tensors.

    `align_views`: the pooled views of an alignment run (from --init); default `cfg.align_views`."""
    from crossalign.data.splits import ensure_splits

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    m, kind = _load_rows(cfg, out)
    m = ensure_splits(m, cfg.seed)
    mods = task_modalities(cfg, m)
    if kind == "tag" and cfg.text_column not in m.columns:
        raise ValueError(f"{m.path}: tagging needs the text column '{cfg.text_column}'")
    a_views: dict[str, ViewSpec] = {}
    for c in mods:
        if align_views and c in align_views:
            a_views[c] = align_views[c]
        else:
            base = cfg.align_views.get(c) or {"column": c}
            a_views[c] = ViewSpec(**{**base, "column": c})
    t_views = {c: v for c in mods if (v := cfg.token_view(c)) is not None}
    align_cols = {"text": "caption"} if cfg.task in BUILTIN_TASKS else dict(cfg.align_columns)
    jobs: dict[str, tuple[str, ViewSpec]] = {c: (c, v) for c, v in a_views.items()}
    jobs.update({f"{c}:tokens": (c, v) for c, v in t_views.items()})
    jobs.update({f"align:{c}": (src, a_views[c]) for c, src in align_cols.items() if c in a_views and src in m.columns})
    encoders = dict(encoders or {})
    feats_np: dict[str, np.ndarray] = {}
    rows_ok: dict[str, np.ndarray] = {}
    specs: dict[str, EncoderSpec] = {}
    problems: list[Any] = []
    for key, (col, view) in jobs.items():
        ekey = json.dumps([view_encoder(view, m), view.options], sort_keys=True, default=str)
        if ekey not in encoders:
            encoders[ekey] = build_view_encoder(view, m)
        enc = encoders[ekey]
        cf = encode_column(m, col, enc, progress=progress, modality=view_modality(view))
        feats_np[key], rows_ok[key] = cf.features, cf.rows
        specs[key] = enc.spec
        problems += cf.problems
    keep = sorted(set.intersection(*(set(r.tolist()) for r in rows_ok.values())))
    if problems:
        log.warning("%d feature problems; %d of %d rows kept", len(problems), len(keep), len(m))
    feats = {}
    for key, arr in feats_np.items():
        pos = {int(r): j for j, r in enumerate(rows_ok[key])}
        feats[key] = torch.from_numpy(np.ascontiguousarray(arr[[pos[r] for r in keep]]))
    rows = [m.rows[r] for r in keep]
    classes = list(classes) if classes else _classes(cfg, kind, m)  # a saved run fixes its classes
    cix = {c: i for i, c in enumerate(classes)}
    seen = {str(t) for r in rows for t in (r["tags"] if kind == "tag" else [r["label"]])}
    if seen - set(cix):
        raise ValueError(f"{m.path}: labels/tags {sorted(seen - set(cix))} are not among the classes {classes}")
    texts = [str(r.get(cfg.text_column) or "") for r in rows]
    width = t_views[cfg.text_column].options.get("words", 32) if cfg.text_column in t_views else 32
    wmask = word_mask(texts, int(width))
    if kind == "tag":
        tg = torch.full((len(rows), int(width)), IGNORE, dtype=torch.long)
        for i, r in enumerate(rows):
            ids = [cix[str(t)] for t in r["tags"]][: int(width)]
            tg[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    else:
        tg = torch.tensor([cix[str(r["label"])] for r in rows], dtype=torch.long)
    gvals = [r.get("group") for r in rows]
    codes: dict[Any, int] = {}
    groups = torch.tensor([codes.setdefault(g if g is not None else ("row", i), len(codes)) for i, g in enumerate(gvals)])
    full = TaskData(feats, wmask, tg, groups, [str(r.get("id", i)) for i, r in enumerate(rows)], texts)
    split_of = np.array([r.get("split") for r in rows])
    splits = {s: full.subset(np.nonzero(split_of == s)[0]) for s in ("train", "val", "test")}
    if cfg.label_fraction < 1:
        n = len(splits["train"])
        k = max(2, int(round(cfg.label_fraction * n)))
        perm = np.random.default_rng(cfg.seed).permutation(n)[:k]
        splits["train"] = splits["train"].subset(np.sort(perm))
    if len(splits["train"]) < 2 or len(splits["val"]) < 1:
        raise ValueError(f"{m.path}: need train and val rows, got {len(splits['train'])} train, {len(splits['val'])} val")
    return PreparedTask(kind, classes, mods, a_views, t_views, specs, splits, m, problems)


def derive(prep: PreparedTask, modalities: list[str] | None = None, label_fraction: float = 1.0,
           seed: int = 0) -> PreparedTask:
    """The same prepared features with fewer modalities and/or a share of the training labels
    (ablations and learning curves without re-reading the cache)."""
    mods = list(modalities or prep.modalities)
    unknown = [c for c in mods if c not in prep.modalities]
    if unknown:
        raise ValueError(f"modalities {unknown} were not prepared (have {prep.modalities})")
    splits = dict(prep.splits)
    if label_fraction < 1:
        n = len(splits["train"])
        k = max(2, int(round(label_fraction * n)))
        splits["train"] = splits["train"].subset(np.sort(np.random.default_rng(seed).permutation(n)[:k]))
    return PreparedTask(prep.kind, prep.classes, mods, {c: prep.align_views[c] for c in mods},
                        {c: v for c, v in prep.token_views.items() if c in mods or c == "text"},
                        prep.specs, splits, prep.manifest, prep.problems)
