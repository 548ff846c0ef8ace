"""`embed_table`: the one function that turns a run's feature table into shared-space vectors.

Views come in three kinds and all go through here: cached features of a frozen tower (fed to the
head), inputs of a tower trained from scratch (the cache holds its prepared inputs), and views whose
pretrained tower is fine-tuned (LoRA/unfreeze): those re-read the raw items from the manifest,
because the cached features were made by the untuned tower.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crossalign.align.model import AlignmentModel
from crossalign.data.features import FeatureTable
from crossalign.modalities import get_reader

__all__ = ["embed_table", "raw_column", "tuned_columns"]


def raw_column(table: FeatureTable, col: str, modality: str) -> list[Any]:
    """The raw items (decoded by the modality's reader) of one column, in table row order."""
    reader = get_reader(modality)
    return [reader.read(table.manifest.rows[int(i)][col], table.manifest.base_dir) for i in table.rows]


def tuned_columns(model: AlignmentModel) -> list[str]:
    """Columns whose pretrained tower is trained with the heads (their cache is stale for the model)."""
    return [c for c in model.cfg.train_towers if c in model.towers and not model.specs[c].caches_inputs]


@torch.inference_mode()
def embed_table(model: AlignmentModel, table: FeatureTable, batch_size: int = 1024,
                raw: dict[str, list[Any]] | None = None, columns: list[str] | None = None
                ) -> dict[str, np.ndarray]:
    """The views of a feature table (default: all of the model's) -> {col: (N, dim)} unit vectors.

    `raw`: already-decoded items for fine-tuned views; when None they are read from the manifest.
    """
    cols = list(columns or model.columns)
    if raw is None:
        raw = {c: raw_column(table, c, model.specs[c].modality) for c in tuned_columns(model) if c in cols}
    was = model.training
    model.eval()
    out = {}
    for col in cols:
        parts = []
        src = raw[col] if col in raw else table.features[col]
        bs = 64 if col in raw else batch_size  # raw items go through a whole tower: smaller batches
        for s in range(0, len(table), bs):
            x = src[s:s + bs]
            x = x if isinstance(x, list) else torch.from_numpy(np.asarray(x))
            parts.append(model.embed(col, x).float().numpy())
        out[col] = np.concatenate(parts) if parts else np.zeros((0, model.out_dim), np.float32)
    model.train(was)
    return out
