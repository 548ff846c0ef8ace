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
from crossalign.datasets.scenes.tasks import TASKS, write_task_manifest
from crossalign.encoders import Encoder, EncoderSpec
from crossalign.fuse.config import TaskConfig
from crossalign.fuse.evidence import WORD_EVIDENCE, evidence_key, occluded_texts
from crossalign.fuse.tasks import TAG_OUTSIDE, validate_user_rows

__all__ = ["IGNORE", "PreparedTask", "TaskData", "derive", "prepare_task", "task_modalities", "word_mask"]

log = logging.getLogger(__name__)
IGNORE = -100  # target of padding words (cross-entropy ignore_index)


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
    builtin = TASKS.get(cfg.task)
    mods = list(cfg.modalities) or (list(builtin.modalities) if builtin else list(m.modality_columns))
    missing = [c for c in mods if c not in m.columns]
    if missing:
        raise ValueError(f"{m.path}: no column(s) {missing} for the task's modalities; columns are {m.columns}")
    return mods


def word_mask(texts: list[str], width: int) -> torch.Tensor:
    n = torch.tensor([min(len(t.split()), width) for t in texts])
    return torch.arange(width).unsqueeze(0) < n.unsqueeze(1)  # (N, W)


def _load_rows(cfg: TaskConfig, out: Path) -> tuple[Manifest, str]:
    src = load_manifest(cfg.data)
    if cfg.task in TASKS:
        path = write_task_manifest(src, cfg.task, out / "task_manifest.jsonl", seed=cfg.seed)
        return load_manifest(path), TASKS[cfg.task].kind
    if cfg.task != "custom":
        raise ValueError(f"unknown task '{cfg.task}': use {', '.join(TASKS)} or a task config (custom)")
    kind = cfg.kind
    if kind == "auto":
        kind = "tag" if any(r.get("tags") is not None for r in src.rows) else "classify"
    validate_user_rows(src, kind, cfg.text_column)
    return src, kind


def _classes(cfg: TaskConfig, kind: str, m: Manifest) -> list[str]:
    if cfg.task in TASKS:
        return list(TASKS[cfg.task].classes)
    vals = {str(t) for r in m.rows for t in (r["tags"] if kind == "tag" else [r["label"]])}
    return sorted(vals, key=lambda v: (v != TAG_OUTSIDE, v))  # the outside tag first, then sorted


def _views(cfg: TaskConfig, mods: list[str],
           align_views: dict[str, ViewSpec] | None) -> tuple[dict[str, ViewSpec], dict[str, ViewSpec]]:
    """(pooled alignment view, token view) per modality column; a run's own views win."""
    a_views: dict[str, ViewSpec] = {}
    for c in mods:
        if align_views and c in align_views:
            a_views[c] = align_views[c]
        else:
            base = cfg.align_views.get(c) or {"column": c}
            a_views[c] = ViewSpec(**{**base, "column": c})
    return a_views, {c: v for c in mods if (v := cfg.token_view(c)) is not None}


def _view_encoder(view: ViewSpec, m: Manifest, encoders: dict[str, Encoder]) -> Encoder:
    """One encoder per (encoder name, options), shared by every job that uses it."""
    ekey = json.dumps([view_encoder(view, m), view.options], sort_keys=True, default=str)
    if ekey not in encoders:
        encoders[ekey] = build_view_encoder(view, m)
    return encoders[ekey]


def encode_occlusion(texts: list[str], width: int, enc: Encoder, progress: bool = False,
                     modality: str | None = None) -> torch.Tensor:
    """Pooled inputs of every word-deleted text (fuse/evidence.py) through the feature cache (equal
    texts are encoded once) -> (N, width, *shape), zeros past each text's words."""
    per_row = [occluded_texts(t, width) for t in texts]
    flat = [{"text": u} for u in dict.fromkeys(x for r in per_row for x in r)]
    if not flat:
        return torch.zeros((len(texts), width, *enc.cache_spec.output_shape))
    cf = encode_column(Manifest(flat), "text", enc, progress=progress, modality=modality)
    if len(cf.rows) < len(flat):
        raise ValueError(f"{len(flat) - len(cf.rows)} word-deleted texts could not be encoded: {cf.problems[:3]}")
    at = {flat[int(r)]["text"]: j for j, r in enumerate(cf.rows)}
    out = np.zeros((len(texts), width, *cf.features.shape[1:]), np.float32)
    for i, r in enumerate(per_row):
        if r:
            out[i, : len(r)] = cf.features[[at[x] for x in r]]
    return torch.from_numpy(out)


def _encode_jobs(m: Manifest, jobs: dict[str, tuple[str, ViewSpec]], encoders: dict[str, Encoder],
                 progress: bool) -> tuple[dict[str, torch.Tensor], dict[str, EncoderSpec], list[Any], list[int]]:
    """Encode every (feature key -> column, view) job through the cache, sharing encoders with equal
    options; keep the rows every feature could encode. -> (features, specs, problems, kept rows)."""
    feats_np: dict[str, np.ndarray] = {}
    rows_ok: dict[str, np.ndarray] = {}
    specs: dict[str, EncoderSpec] = {}
    problems: list[Any] = []
    for key, (col, view) in jobs.items():
        enc = _view_encoder(view, m, encoders)
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
    return feats, specs, problems, keep


def _targets(kind: str, rows: list[dict[str, Any]], classes: list[str], width: int, where: object) -> torch.Tensor:
    """Class ids (N,) or tag ids (N, W) with IGNORE on padding; unknown labels are an error."""
    cix = {c: i for i, c in enumerate(classes)}
    seen = {str(t) for r in rows for t in (r["tags"] if kind == "tag" else [r["label"]])}
    if seen - set(cix):
        raise ValueError(f"{where}: labels/tags {sorted(seen - set(cix))} are not among the classes {classes}")
    if kind != "tag":
        return torch.tensor([cix[str(r["label"])] for r in rows], dtype=torch.long)
    tg = torch.full((len(rows), width), IGNORE, dtype=torch.long)  # (N, W)
    for i, r in enumerate(rows):
        ids = [cix[str(t)] for t in r["tags"]][:width]
        tg[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return tg


def _split(full: TaskData, rows: list[dict[str, Any]], cfg: TaskConfig, where: object) -> dict[str, TaskData]:
    """train/val/test by each row's `split`; `label_fraction` keeps a seeded share of train."""
    split_of = np.array([r.get("split") for r in rows])
    splits = {s: full.subset(np.nonzero(split_of == s)[0]) for s in ("train", "val", "test")}
    if cfg.label_fraction < 1:
        n = len(splits["train"])
        k = max(2, int(round(cfg.label_fraction * n)))
        perm = np.random.default_rng(cfg.seed).permutation(n)[:k]
        splits["train"] = splits["train"].subset(np.sort(perm))
    if len(splits["train"]) < 2 or len(splits["val"]) < 1:
        raise ValueError(f"{where}: need train and val rows, got {len(splits['train'])} train, {len(splits['val'])} val")
    return splits


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
    if kind == "tag" and cfg.text_column not in mods:  # the tags are on its words: nothing to tag without it
        raise ValueError(f"task '{cfg.task}' tags the words of the '{cfg.text_column}' column, so the modalities "
                         f"must include it (got {', '.join(mods)}); e.g. --modalities {cfg.text_column},"
                         f"{','.join(c for c in mods if c != cfg.text_column) or 'image'}")
    a_views, t_views = _views(cfg, mods, align_views)
    builtin = TASKS.get(cfg.task)
    align_cols = dict(builtin.align_columns) if builtin else dict(cfg.align_columns)
    jobs: dict[str, tuple[str, ViewSpec]] = {c: (c, v) for c, v in a_views.items()}
    jobs.update({f"{c}:tokens": (c, v) for c, v in t_views.items()})
    jobs.update({f"align:{c}": (src, a_views[c]) for c, src in align_cols.items() if c in a_views and src in m.columns})
    encs = dict(encoders or {})
    feats, specs, problems, keep = _encode_jobs(m, jobs, encs, progress)
    rows = [m.rows[r] for r in keep]
    classes = list(classes) if classes else _classes(cfg, kind, m)  # a saved run fixes its classes
    texts = [str(r.get(cfg.text_column) or "") for r in rows]
    width = int(t_views[cfg.text_column].options.get("words", 32) if cfg.text_column in t_views else 32)
    if kind == "tag" and WORD_EVIDENCE[cfg.word_evidence] == "deleted":
        view = a_views[cfg.text_column]
        feats[evidence_key(cfg.text_column)] = encode_occlusion(
            texts, width, _view_encoder(view, m, encs), progress, view_modality(view))
    tg = _targets(kind, rows, classes, width, m.path)
    codes: dict[Any, int] = {}  # positives share a group; a row without one is its own group
    groups = torch.tensor([codes.setdefault(g if (g := r.get("group")) is not None else ("row", i), len(codes))
                           for i, r in enumerate(rows)])
    full = TaskData(feats, word_mask(texts, width), tg, groups, [str(r.get("id", i)) for i, r in enumerate(rows)], texts)
    return PreparedTask(kind, classes, mods, a_views, t_views, specs, _split(full, rows, cfg, m.path), m, problems)


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
