"""`train_bridge`: a run + scenes-style data -> a bridge folder, through the shared `Trainer`.

Stage 1 trains the projector alone (LM frozen); with `lora_r > 0` stage 2 adds LoRA adapters on
the LM's attention and trains both. Every step reads cached aligned embeddings, never the towers.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crossalign.bridge.config import BridgeConfig
from crossalign.bridge.embeddings import AlignedTable, aligned_embeddings
from crossalign.bridge.lm import LanguageModel
from crossalign.bridge.model import Bridge
from crossalign.bridge.prompts import Example, examples_for_row
from crossalign.bridge.slots import SlotProjector, fit_slot_heads, slot_targets
from crossalign.bridge.task import BridgeTask
from crossalign.train.loggers import build_logger
from crossalign.train.trainer import Trainer, TrainResult

__all__ = ["train_bridge", "build_examples", "bridge_config_for", "bridge_recipe"]

log = logging.getLogger(__name__)


def build_examples(table: AlignedTable, rows: np.ndarray, columns: list[str], cfg: BridgeConfig
                   ) -> tuple[list[Example], np.ndarray]:
    """Examples over `rows` for every column; returns them with the (n_cols * len(rows), dim) embeddings
    they index (column c's copy of row r sits at c * len(rows) + r's position)."""
    exs: list[Example] = []
    embs = []
    for ci, col in enumerate(columns):
        embs.append(table.emb[col][rows])
        for p, j in enumerate(rows):
            row = table.row(int(j))
            for e in examples_for_row(ci * len(rows) + p, row, cfg.tasks, cfg.qa_per_row, cfg.seed):
                exs.append(e)
    return exs, np.concatenate(embs)


def row_slot_targets(table: AlignedTable, rows: np.ndarray, columns: list[str], slots: int) -> np.ndarray:
    """Slot targets in `build_examples`' embedding order (one copy of the rows per column)."""
    from crossalign.datasets.scenes.qa import objects_of

    t = slot_targets([objects_of(table.row(int(j))) for j in rows], slots)
    return np.concatenate([t] * len(columns))


# What `bridge train` does with the settings a user leaves out, by the data it is given. Measured on
# the demo (README "Language-model bridge"): on scenes-style rows (captions + `objects`) the slots
# projector with cached LM layers and LoRA is ahead of nearest-caption retrieval for image and audio
# inputs, where the LLaVA-style MLP was behind; rows without `objects` can only train the MLP on
# captions.
SLOTS_RECIPE: dict[str, Any] = {
    "projector": "slots", "free_tokens": 0, "slot_epochs": 60, "max_rows": 640, "qa_per_row": 1,
    "lora_r": 16, "lora_lr": 2e-3, "cache_layers": 22, "val_rows": 8,
    "lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "train": {"epochs": 3, "batch_size": 8, "lr": 2e-3},
}
CAPTION_RECIPE: dict[str, Any] = {"projector": "mlp", "tasks": ["caption"], "max_rows": 320}


def bridge_recipe(data: str | Path) -> tuple[str, dict[str, Any]]:
    """("slots", SLOTS_RECIPE) when every row of the manifest carries scene `objects`, else
    ("caption", CAPTION_RECIPE)."""
    from crossalign.data.manifest import load_manifest

    rows = load_manifest(data).rows
    scenes = bool(rows) and all(isinstance(r.get("objects"), list) and r["objects"] for r in rows)
    return ("slots", SLOTS_RECIPE) if scenes else ("caption", CAPTION_RECIPE)


def bridge_config_for(data: str | Path, given: dict[str, Any]) -> tuple[BridgeConfig, str]:
    """The recipe for `data` with the settings the user gave on top (`train` merged key by key).
    Returns the config and the recipe's name."""
    name, recipe = bridge_recipe(data)
    if given.get("projector", recipe["projector"]) != recipe["projector"]:
        name, recipe = "defaults", {"max_rows": 320}  # another projector: none of the recipe's LM stage either
    elif given.get("lm", "smollm2") != "smollm2" and "cache_layers" not in given:
        recipe = {k: v for k, v in recipe.items() if k != "cache_layers"}  # 22 is SmolLM2's 30 layers less 8
    merged = {**recipe, **{k: v for k, v in given.items() if k != "train"}}
    merged["train"] = {**recipe.get("train", {}), **(given.get("train") or {})}
    return BridgeConfig.from_dict(merged, "bridge train"), name


def train_bridge(run: str | Path, data: str | Path, out: str | Path, cfg: BridgeConfig | None = None, *,
                 progress: bool = True, lm: LanguageModel | None = None, resume: bool = False,
                 log: Sequence[str] | None = None) -> tuple[Path, dict[str, TrainResult]]:
    """`cfg`: every setting (default: the recipe `bridge_config_for` picks for `data`). `log`: experiment
    logger specs (train/loggers.py), one logged run per stage."""
    from crossalign.align.embedder import Embedder

    cfg = cfg or bridge_config_for(data, {})[0]  # as `bridge train` with no settings: the data's recipe
    cfg.run = str(Path(run).resolve())
    out = Path(out)
    embedder = Embedder.from_run(run)
    for what, cols in (("train_columns", cfg.train_columns), ("head_columns", cfg.head_columns)):
        missing = [c for c in cols if c not in embedder.model.columns]
        if missing:
            raise ValueError(f"{what} {missing} are not views of run {run} ({embedder.model.columns})")
    table = aligned_embeddings(embedder, data, progress=progress)
    tr, va = table.where("train"), table.where("val")
    if len(tr) == 0 or len(va) == 0:
        raise ValueError(f"{data}: need rows in split 'train' and 'val' (got {len(tr)} and {len(va)})")
    rng = np.random.default_rng(cfg.seed)
    if cfg.max_rows and cfg.max_rows < len(tr):
        tr = np.sort(rng.choice(tr, cfg.max_rows, replace=False))
    va = va[:cfg.val_rows]
    train_ex, train_emb = build_examples(table, tr, cfg.train_columns, cfg)
    val_ex, val_emb = build_examples(table, va, cfg.train_columns[:1], cfg)
    bridge = Bridge.new(cfg, embedder.model.out_dim, lm=lm, embedder=embedder)
    results: dict[str, TrainResult] = {}
    t0 = time.time()
    train_targets, slot_stats = None, {}
    if isinstance(bridge.projector, SlotProjector):
        # The attribute heads learn from every training row first (no LM, seconds), the LM stage after.
        all_tr, all_va = table.where("train"), table.where("val")
        heads = cfg.head_columns or list(embedder.model.columns)
        z_all = np.concatenate([table.emb[c][all_tr] for c in heads])
        ref = cfg.train_columns[:1]  # validated on the first LM view, as the LM stage is
        slot_stats = fit_slot_heads(bridge.projector, z_all, row_slot_targets(table, all_tr, heads, cfg.slots),
                                    table.emb[ref[0]][all_va], row_slot_targets(table, all_va, ref, cfg.slots),
                                    cfg.slot_epochs, seed=cfg.seed)
        logging.getLogger(__name__).info("slot heads fitted on %s (val accuracy): %s", ",".join(heads),
                                         {k: round(v, 3) for k, v in slot_stats.items()})
        train_targets = row_slot_targets(table, tr, cfg.train_columns, cfg.slots)
    t = cfg.train
    # lora_stage "joint": adapters train with the projector from the first step (the backward runs
    # through the LM anyway, so they add little to a step); "after": projector first, then LoRA.
    joint = bool(cfg.lora_r) and (cfg.lora_stage == "joint" or cfg.cache_layers > 0)
    stages = [("stage1", t.epochs, t.lr)] + ([("stage2", cfg.lora_epochs, t.lr)] if cfg.lora_r and not joint else [])
    for name, epochs, lr in stages:
        if name == "stage2" or joint:
            bridge.enable_lora()
        bs = min(t.batch_size, len(train_ex))
        bar = None
        if progress:
            from crossalign.progress import progress_bar

            bar = progress_bar(total=epochs * max(1, len(train_ex) // bs), desc=f"bridge {name}", unit="step")
        task = BridgeTask(bridge, train_ex, train_emb, val_ex, val_emb, lora_lr=cfg.lora_lr, bar=bar,
                          train_targets=train_targets, aux_weight=cfg.aux_weight)
        logger = build_logger(log, out / name, params=cfg.to_dict(), run_name=f"{out.resolve().name}-{name}",
                              fresh=not (resume and (out / name / "last_state.pt").exists()))
        # the bar above shows progress; validation loss only reports (no early stop)
        trainer = Trainer(task, out / name, **t.trainer_kwargs(epochs=epochs, batch_size=bs, lr=lr, patience=0,
                                                               progress=False), logger=logger)
        try:
            results[name] = trainer.fit(resume=resume)
        finally:
            if logger is not None:
                logger.close(out / name)
        if bar is not None:
            bar.close()
        task.load(out / name, "best")
    bridge.save(out, extra={"stats": {
        "rows": int(len(tr)), "examples": len(train_ex), "columns": cfg.train_columns,
        **({"head_columns": heads} if isinstance(bridge.projector, SlotProjector) else {}), "seconds": round(time.time() - t0, 1),
        **({"slot_heads_val": slot_stats} if slot_stats else {}),
        **{f"{k}_best_val_loss": r.best_metric for k, r in results.items()}}})
    (out / "train_history.json").write_text(json.dumps({k: r.history for k, r in results.items()}, indent=2))
    for name, _, _ in stages:  # keep the log, drop per-stage weight copies once the bridge is saved
        for f in (out / name).glob("*.safetensors"):
            f.unlink()
        (out / name / "last_state.pt").unlink(missing_ok=True)
    logging.getLogger(__name__).info("bridge saved to %s", out)  # `log` is the logger specs here
    return out, results


