"""Saved task runs: load, evaluate on (new) data, predict from raw inputs. The CLI calls these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from crossalign.align.io import build_towers
from crossalign.align.model import AlignmentModel
from crossalign.config import ModelConfig, RunConfig, ViewSpec
from crossalign.encoders import Encoder, EncoderSpec, build_encoder
from crossalign.fuse.config import TaskConfig
from crossalign.fuse.data import word_mask
from crossalign.fuse.evidence import evidence_key, occluded_texts
from crossalign.fuse.model import FusionModel
from crossalign.modalities import get_reader
from crossalign.saved import read_contract, read_json, weights_file

TASK_FORMAT = 1
TASK_KIND = "task-run"

__all__ = ["TASK_FORMAT", "TASK_KIND", "Prediction", "TaskRun", "evaluate_run", "load_task_run", "predict"]


@dataclass
class TaskRun:
    folder: Path
    model: FusionModel
    cfg: TaskConfig
    kind: str
    classes: list[str]
    modalities: list[str]
    align_views: dict[str, ViewSpec]
    token_views: dict[str, ViewSpec]
    specs: dict[str, EncoderSpec]


def load_task_run(folder: str | Path, which: str = "model") -> TaskRun:
    folder = Path(folder)
    read_contract(folder, (TASK_KIND,), TASK_FORMAT)  # a task run from before crossalign.json: its task.json
    meta = read_json(folder / "task.json", "a crossalign task run")
    cfg = TaskConfig.from_dict(meta["config"], f"{folder}/task.json config")
    specs = {k: EncoderSpec.from_dict(d) for k, d in meta["specs"].items()}
    mods = meta["modalities"]
    mcfg = ModelConfig.from_dict(meta["align_model"], f"{folder}/task.json align_model")
    align = AlignmentModel(mcfg, {c: specs[c] for c in mods}, build_towers(RunConfig(model=mcfg), specs))
    token_specs = {k[: -len(":tokens")]: s for k, s in specs.items() if k.endswith(":tokens")}
    model = FusionModel(align, mods, token_specs, meta["kind"], len(meta["classes"]), cfg.fusion, cfg.d, cfg.heads,
                        cfg.layers, cfg.dropout, query=cfg.text_column, word_evidence=cfg.word_evidence)
    model.load_state_dict(load_file(str(weights_file(folder, which))))
    model.eval()
    return TaskRun(folder, model, cfg, meta["kind"], meta["classes"], mods,
                   {c: ViewSpec.from_dict(d, f"align_views.{c}") for c, d in meta["align_views"].items()},
                   {c: ViewSpec.from_dict(d, f"token_views.{c}") for c, d in meta["token_views"].items()}, specs)


def evaluate_run(run: TaskRun | str | Path, data: str | Path | None = None, split: str = "test",
                 progress: bool = False) -> dict[str, Any]:
    """Metrics of a saved run on `split` of `data` (default: the data it was trained on), with each
    modality removed too. Built-in tasks re-derive their rows from the scenes manifest."""
    from crossalign.fuse.data import prepare_task
    from crossalign.fuse.evaluate import evaluate_task

    run = run if isinstance(run, TaskRun) else load_task_run(run)
    d = run.cfg.to_dict() | {"out": str(run.folder / "eval_data"), "label_fraction": 1.0,
                             "modalities": run.modalities}
    if data is not None:
        d["data"] = str(data)
    cfg = TaskConfig.from_dict(d)
    prep = prepare_task(cfg, align_views=run.align_views, progress=progress, classes=run.classes)
    part = prep.splits.get(split)
    if part is None or not len(part):
        raise ValueError(f"{cfg.data}: no rows in split '{split}'")
    ev = evaluate_task(run.model, part, run.kind, run.classes)
    ev["split"] = split
    return ev


@dataclass
class Prediction:
    label: str | None  # classification: predicted class
    probs: dict[str, float] | None  # classification: class -> probability
    words: list[str] | None  # tagging: whitespace words of the text
    tags: list[str] | None  # tagging: one tag per word (words past the model's width get None)
    tag_probs: list[float] | None  # tagging: probability of each predicted tag


class _Encoders:
    def __init__(self, run: TaskRun):
        self.run, self.cache = run, {}

    def get(self, key: str) -> Encoder:
        if key not in self.cache:
            spec = self.run.specs[key]
            col = key.split(":")[0]
            self.cache[key] = (self.run.model.align.towers[col] if key == col and col in self.run.model.align.towers
                               else build_encoder(spec.name, modality=spec.modality, **spec.options))
        return self.cache[key]


@torch.inference_mode()
def predict(run: TaskRun | str | Path, inputs: dict[str, Sequence[Any]], base_dir: Path | None = None,
            encoders: Any = None) -> list[Prediction]:
    """Raw inputs per modality column (text strings, image/audio paths or objects, sensor arrays or
    paths) -> one `Prediction` per item. Modalities left out (or None for an item) count as missing."""
    run = run if isinstance(run, TaskRun) else load_task_run(run)
    unknown = [c for c in inputs if c not in run.modalities]
    if unknown:
        raise ValueError(f"this run fuses {run.modalities}; it has no {unknown}")
    n = max((len(v) for v in inputs.values()), default=0)
    if n == 0:
        raise ValueError("no inputs: give at least one modality")
    enc = encoders or _Encoders(run)
    feats: dict[str, torch.Tensor] = {}
    present: dict[str, torch.Tensor] = {}
    texts = [""] * n
    for c in run.modalities:
        vals = list(inputs.get(c) or [None] * n)
        if len(vals) != n:
            raise ValueError(f"'{c}' has {len(vals)} values, expected {n}")
        have = [v is not None for v in vals]
        present[c] = torch.tensor(have)
        if c == run.cfg.text_column:
            texts = [str(v) if v is not None else "" for v in vals]
        reader = get_reader(run.specs[c].modality)
        raws = [reader.read(v, base_dir) for v in vals if v is not None]
        for key in [c] + ([f"{c}:tokens"] if f"{c}:tokens" in run.specs else []):
            shape = tuple(run.specs[key].output_shape) if key != c or c not in run.model.align.towers \
                else tuple(run.specs[key].options["input_shape"])
            full = torch.zeros((n, *shape))
            if raws:
                e = enc.get(key)
                x = e.preprocess(raws) if e.spec.caches_inputs else e.encode(raws)
                full[torch.tensor(have)] = x.float()
            feats[key] = full
    width = int(run.specs[f"{run.cfg.text_column}:tokens"].output_shape[0]) \
        if f"{run.cfg.text_column}:tokens" in run.specs else 32
    if run.model.evidence is not None and run.model.evidence.source == "deleted":  # re-encode word-deleted texts
        e = enc.get(run.cfg.text_column)
        per = [occluded_texts(t, width) for t in texts]
        flat = [x for r in per for x in r]
        x = (e.preprocess(flat) if e.spec.from_scratch else e.encode(flat)).float() if flat else None
        occ = torch.zeros((n, width, *feats[run.cfg.text_column].shape[1:]))
        k = 0
        for i, r in enumerate(per):
            occ[i, : len(r)] = x[k:k + len(r)] if x is not None else 0
            k += len(r)
        feats[evidence_key(run.cfg.text_column)] = occ
    wm = word_mask(texts, width)
    probs = run.model(feats, wm, present).logits.softmax(-1).numpy()
    out = []
    for i in range(n):
        if run.kind == "classify":
            p = probs[i]
            out.append(Prediction(run.classes[int(p.argmax())], {c: float(v) for c, v in zip(run.classes, p)},
                                  None, None, None))
        else:
            words = texts[i].split()
            k = probs[i].argmax(-1)
            tags = [run.classes[int(k[j])] if j < width else None for j in range(len(words))]
            tp = [float(probs[i][j, k[j]]) if j < width else float("nan") for j in range(len(words))]
            out.append(Prediction(None, None, words, tags, tp))
    return out

