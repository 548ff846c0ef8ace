"""Saved runs: a folder with `crossalign.json` (kind "alignment-run"), `config.json`,
`encoders.json` and `model.safetensors` (+ `best`/`last` checkpoints). No pickle.

Everything that reads a run (eval, search, serve, bridge, tasks) goes through `load_run`; how files
are written and which weights are read is `crossalign.saved`'s job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.encoders import Encoder, EncoderSpec, build_encoder
from crossalign.encoders.hub import refuse_hub_ids
from crossalign.saved import (WEIGHTS_ORDER, atomic_write_json, read_contract, read_json, save_weights, weights_file,
                              write_contract)

__all__ = ["save_model", "load_run", "build_towers", "export_merged", "RUN_FORMAT"]

RUN_FORMAT = 1
RUN_KIND = "alignment-run"


def save_model(model: AlignmentModel, cfg: RunConfig, folder: str | Path, name: str = "model",
               extra: dict[str, Any] | None = None) -> Path:
    """Write `<name>.safetensors` (+ config.json and encoders.json) into `folder`, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / f"{name}.safetensors", model.weights(), metadata={"format": str(RUN_FORMAT)})
    atomic_write_json(folder / "config.json", cfg.to_dict() | {"format": RUN_FORMAT})
    atomic_write_json(folder / "encoders.json", {c: s.to_dict() for c, s in model.specs.items()})
    parts = ["config.json", "encoders.json"]
    if extra:
        atomic_write_json(folder / f"{name}.json", extra)
    # weights: `<name>.safetensors`, read in the order `crossalign.saved.weights_file` owns
    write_contract(folder, RUN_KIND, RUN_FORMAT, parts, weights=list(WEIGHTS_ORDER))
    return folder / f"{name}.safetensors"


def build_towers(cfg: RunConfig, specs: dict[str, EncoderSpec]) -> dict[str, Encoder]:
    """Towers that live inside the model: from-scratch encoders, fine-tuned pretrained ones and
    pretrained ones whose top trains on cached activations (`tune_last`, encoders/top.py)."""
    towers = {}
    for v in cfg.model.views:
        spec = specs[v.column]
        if spec.caches_inputs or v.column in cfg.model.train_towers:
            towers[v.column] = build_encoder(spec.name, modality=spec.modality, **spec.options)
            if v.column in cfg.model.tower_tuning:  # LoRA adapters / partial unfreezing (align/lora.py)
                from crossalign.align.lora import TowerTuning, apply_tuning

                t = TowerTuning.from_dict(cfg.model.tower_tuning[v.column], f"model.tower_tuning.{v.column}")
                if spec.tune_last and t.last_blocks > spec.tune_last:  # blocks below run once, at extraction
                    raise ValueError(f"view '{v.column}': tower_tuning.last_blocks={t.last_blocks} reaches below "
                                     f"the tuned top (tune_last={spec.tune_last}) whose input is cached")

                towers[v.column] = apply_tuning(towers[v.column], cfg.model.tower_tuning[v.column])
    return towers


def load_run(folder: str | Path, which: str = "best") -> tuple[AlignmentModel, RunConfig]:
    """Load `best` (falls back to `model`/`last`) weights of a run folder, bit-identically."""
    folder = Path(folder)
    read_contract(folder, (RUN_KIND,), RUN_FORMAT)  # a run from before crossalign.json: its config.json
    cfg = RunConfig.from_dict(read_json(folder / "config.json", "a crossalign run"), f"{folder}/config.json")
    specs = {c: EncoderSpec.from_dict(d) for c, d in json.loads((folder / "encoders.json").read_text()).items()}
    refuse_hub_ids((s.name for s in specs.values()), str(folder / "encoders.json"))
    for v in cfg.model.views:  # runs saved before encoders were chosen per column: keep what they used
        if v.encoder is None and v.column in specs:
            v.encoder, v.why = specs[v.column].name, "from the run's encoders.json"
    model = AlignmentModel(cfg.model, specs, build_towers(cfg, specs))
    wf = weights_file(folder, which)
    model.load_weights(load_file(str(wf)), str(wf))
    model.eval()
    return model, cfg


def export_merged(run: str | Path, out: str | Path, which: str = "best") -> Path:
    """A run with LoRA towers -> a plain run (adapters merged, `tower_tuning` dropped) in `out`."""
    from crossalign.align.lora import merge_tuning

    model, cfg = load_run(run, which)
    for col in list(cfg.model.tower_tuning):
        merge_tuning(model.towers[col])  # type: ignore[arg-type]
    cfg.model.tower_tuning = {}
    return save_model(model, cfg, out, "model")
