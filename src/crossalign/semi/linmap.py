"""A linear map between two views fitted on (pseudo-)matched pairs: PCA of each view (fitted on all
its items, no pairs needed), then an orthogonal Procrustes rotation or a ridge map A -> B.
Saved as `map.safetensors` + `map.json` (no pickle)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LinearMap", "fit_linear_map"]


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean (F,), components (k, F)) of x (N, F)."""
    mu = x.mean(0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    return mu, vt[:k]


def _l2(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)


@dataclass
class LinearMap:
    mean_a: np.ndarray  # (F_a,)
    comp_a: np.ndarray  # (k, F_a)
    mean_b: np.ndarray  # (F_b,)
    comp_b: np.ndarray  # (k, F_b)
    w: np.ndarray  # (k, k): A's PCA coordinates -> B's
    kind: str

    def map_a(self, x: np.ndarray) -> np.ndarray:
        """A items (N, ...) -> unit vectors in B's PCA space (N, k)."""
        return _l2(((x.reshape(len(x), -1) - self.mean_a) @ self.comp_a.T) @ self.w)

    def map_b(self, y: np.ndarray) -> np.ndarray:
        return _l2((y.reshape(len(y), -1) - self.mean_b) @ self.comp_b.T)

    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(getattr(self, k), dtype=np.float32)
                  for k in ("mean_a", "comp_a", "mean_b", "comp_b", "w")}
        tmp = folder / ".map.safetensors.tmp"
        save_file(arrays, str(tmp))
        os.replace(tmp, folder / "map.safetensors")
        (folder / "map.json").write_text(json.dumps({"kind": self.kind, "dim": int(self.w.shape[1])}, indent=2))
        return folder / "map.safetensors"

    @classmethod
    def load(cls, folder: str | Path) -> LinearMap:
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / "map.safetensors").exists():
            raise FileNotFoundError(f"{folder}: no map.safetensors (not an align-unpaired output)")
        meta = json.loads((folder / "map.json").read_text())
        return cls(**load_file(str(folder / "map.safetensors")), kind=str(meta.get("kind", "procrustes")))


def fit_linear_map(xa: np.ndarray, xb: np.ndarray, ia: np.ndarray, ib: np.ndarray, k: int = 64,
                   kind: str = "procrustes", alpha: float = 1.0) -> LinearMap:
    """PCA each view on all its items; fit A -> B on the matched rows (ia[i], ib[i])."""
    from scipy.linalg import orthogonal_procrustes

    if kind not in ("procrustes", "ridge"):
        raise ValueError(f"linear map kind must be procrustes or ridge, not {kind!r}")
    if len(ia) < 2:
        raise ValueError("a linear map needs at least 2 matched pairs")
    fa, fb = xa.reshape(len(xa), -1).astype(np.float64), xb.reshape(len(xb), -1).astype(np.float64)
    k = min(k, len(fa) - 1, len(fb) - 1, fa.shape[1], fb.shape[1])
    ma, ca = _pca(fa, k)
    mb, cb = _pca(fb, k)
    pa, pb = (fa[ia] - ma) @ ca.T, (fb[ib] - mb) @ cb.T  # (m, k) matched coordinates
    if kind == "procrustes":
        w, _ = orthogonal_procrustes(pa / np.linalg.norm(pa), pb / np.linalg.norm(pb))
    else:
        w = np.linalg.solve(pa.T @ pa + alpha * np.eye(k), pa.T @ pb)
    return LinearMap(ma, ca, mb, cb, w, kind)
