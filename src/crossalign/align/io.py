"""Saved runs: a folder with `config.json`, `model.safetensors` and `encoders.json`. No pickle.

Everything that reads a run (eval, search, serve, bridge, tasks) goes through `load_run`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.encoders import Encoder, EncoderSpec, build_encoder

__all__ = ["save_model", "load_run", "build_towers", "RUN_FORMAT"]

RUN_FORMAT = 1


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def save_model(model: AlignmentModel, cfg: RunConfig, folder: str | Path, name: str = "model",
               extra: dict[str, Any] | None = None) -> Path:
    """Write `<name>.safetensors` (+ config.json and encoders.json) into `folder`, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = folder / f".{name}.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": str(RUN_FORMAT)})
    os.replace(tmp, folder / f"{name}.safetensors")
    _atomic_write(folder / "config.json", json.dumps(cfg.to_dict() | {"format": RUN_FORMAT}, indent=2))
    _atomic_write(folder / "encoders.json", json.dumps({c: s.to_dict() for c, s in model.specs.items()}, indent=2))
    if extra:
        _atomic_write(folder / f"{name}.json", json.dumps(extra, indent=2))
    return folder / f"{name}.safetensors"


def build_towers(cfg: RunConfig, specs: dict[str, EncoderSpec]) -> dict[str, Encoder]:
    """Towers that live inside the model: from-scratch encoders and fine-tuned pretrained ones."""
    towers = {}
    for v in cfg.model.views:
        spec = specs[v.column]
        if spec.from_scratch or v.column in cfg.model.train_towers:
            towers[v.column] = build_encoder(spec.name, modality=spec.modality, **spec.options)
            if v.column in cfg.model.tower_tuning:  # LoRA adapters / partial unfreezing (align/lora.py)
                from crossalign.align.lora import apply_tuning

                towers[v.column] = apply_tuning(towers[v.column], cfg.model.tower_tuning[v.column])
    return towers


def load_run(folder: str | Path, which: str = "best") -> tuple[AlignmentModel, RunConfig]:
    """Load `best` (falls back to `model`/`last`) weights of a run folder, bit-identically."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: not a crossalign run (no config.json)")
    raw = json.loads((folder / "config.json").read_text())
    raw.pop("format", None)
    cfg = RunConfig.from_dict(raw)
    specs = {c: EncoderSpec.from_dict(d) for c, d in json.loads((folder / "encoders.json").read_text()).items()}
    for v in cfg.model.views:  # runs saved before encoders were chosen per column: keep what they used
        if v.encoder is None and v.column in specs:
            v.encoder, v.why = specs[v.column].name, "from the run's encoders.json"
    model = AlignmentModel(cfg.model, specs, build_towers(cfg, specs))
    for name in (which, "model", "best", "last"):
        f = folder / f"{name}.safetensors"
        if f.exists():
            state = load_file(str(f))
            model.load_state_dict(state, strict=True)
            break
    else:
        raise FileNotFoundError(f"{folder}: no {which}.safetensors / model.safetensors")
    model.eval()
    return model, cfg
