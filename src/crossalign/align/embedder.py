"""From raw values (text, image files, audio, arrays) to the shared space, using a saved run.

Used by search, the HTTP service and the language-model bridge: the same modality readers as
training, the same encoders (built from the run's specs, so versions match), then the heads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from crossalign.align.io import load_run
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.encoders import Encoder, build_encoder
from crossalign.modalities import get_reader

__all__ = ["Embedder"]


class Embedder:
    def __init__(self, model: AlignmentModel, cfg: RunConfig, run_dir: Path | None = None):
        self.model, self.cfg, self.run_dir = model.eval(), cfg, run_dir
        self._encoders: dict[str, Encoder] = {}

    @classmethod
    def from_run(cls, folder: str | Path) -> "Embedder":
        model, cfg = load_run(folder)
        return cls(model, cfg, Path(folder))

    def column_for(self, modality_or_column: str) -> str:
        """A view column for a modality name ('image' -> first image view) or the column itself."""
        if modality_or_column in self.model.columns:
            return modality_or_column
        for c in self.model.columns:
            if self.model.specs[c].modality == modality_or_column:
                return c
        raise ValueError(f"this run has no '{modality_or_column}' view; it has {', '.join(self.model.columns)}")

    @property
    def modalities(self) -> dict[str, str]:
        return {c: self.model.specs[c].modality for c in self.model.columns}

    def _encoder(self, col: str) -> Encoder:
        if col not in self._encoders:
            spec = self.model.specs[col]
            # Built outside inference mode even when the first call comes from `embed_raw`: tensors
            # made in inference mode (buffers, module constants) cannot take part in autograd later
            # (explain's integrated gradients run through these towers).
            with torch.inference_mode(False):
                self._encoders[col] = (self.model.towers[col] if col in self.model.towers
                                       else build_encoder(spec.name, modality=spec.modality, **spec.options))
        return self._encoders[col]

    def read(self, modality_or_column: str, values: Sequence[Any], base_dir: Path | None = None) -> list[Any]:
        col = self.column_for(modality_or_column)
        reader = get_reader(self.model.specs[col].modality)
        return [reader.read(v, base_dir) for v in values]

    @torch.inference_mode()
    def embed_raw(self, modality_or_column: str, raws: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Raw items (already read) -> (N, dim) float32, L2-normalised."""
        col = self.column_for(modality_or_column)
        enc = self._encoder(col)
        out = []
        for s in range(0, len(raws), batch_size):
            chunk = list(raws[s:s + batch_size])
            if col in self.model.towers:
                x = enc.preprocess(chunk) if enc.spec.caches_inputs else chunk
                z = self.model.embed(col, x)
            else:
                z = self.model.embed(col, enc.encode(chunk))
            out.append(z.float().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.out_dim), np.float32)

    def embed(self, modality_or_column: str, values: Sequence[Any], base_dir: Path | None = None,
              batch_size: int = 32) -> np.ndarray:
        """Values as in a manifest (text, paths, arrays, PIL images, Audio) -> (N, dim)."""
        return self.embed_raw(modality_or_column, self.read(modality_or_column, values, base_dir), batch_size)

    @torch.inference_mode()
    def embed_features(self, col: str, feats: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Cached features (or from-scratch tower inputs) of a column -> (N, dim)."""
        out = []
        for s in range(0, len(feats), batch_size):
            out.append(self.model.embed(col, torch.from_numpy(np.asarray(feats[s:s + batch_size]))).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.out_dim), np.float32)
