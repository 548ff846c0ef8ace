"""What crosses the wire: the trainable weights of heads (and from-scratch / LoRA tower parts).

Frozen pretrained weights never travel (every site builds them from the same package), and the
standardisation buffers are fixed once from pooled statistics. Aggregation averages each
parameter over the sites that actually sent it, so a head no site trained stays bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from crossalign.align.model import AlignmentModel

__all__ = [
    "aggregate_per_parameter",
    "exchanged_keys",
    "from_record",
    "is_statistic",
    "load_exchanged",
    "norm_keys",
    "pooled_norms",
    "record_bytes",
    "to_record",
    "to_record_np",
]


STATISTICS = ("running_mean", "running_var")  # BatchNorm buffers: statistics, not weights


def is_statistic(key: str) -> bool:
    """A running statistic travels and is averaged, but a server optimiser must not step it: momentum
    or Adam extrapolating a running variance past the sites' values can make it negative."""
    return key.endswith(STATISTICS)


def norm_keys(model: AlignmentModel) -> list[str]:
    """Standardisation buffers (fixed from the statistics round, never averaged)."""
    return [k for k in model.state_dict() if ".norm." in k and k.startswith(("heads.", "linear."))]


def exchanged_keys(model: AlignmentModel) -> list[str]:
    """Trainable parameters plus floating buffers of trained towers (BatchNorm running statistics)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    skip = set(norm_keys(model))
    keys = []
    for k, v in model.state_dict().items():
        if k in skip:
            continue
        if k in trainable or (k.startswith("towers.") and k not in dict(model.named_parameters())
                              and v.is_floating_point() and _tower_trains(model, k)):
            keys.append(k)
    return keys


def _tower_trains(model: AlignmentModel, key: str) -> bool:
    col = key.split(".")[1]
    return any(p.requires_grad for p in model.towers[col].parameters())


def to_record(model: AlignmentModel, keys: Iterable[str] | None = None) -> ArrayRecord:
    state = model.state_dict()
    keys = exchanged_keys(model) if keys is None else list(keys)
    return ArrayRecord({k: Array(state[k].detach().cpu().contiguous().numpy().copy()) for k in keys})


def to_record_np(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.array(v, copy=True, order="C")) for k, v in arrays.items()})


def from_record(rec: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in rec.items()}


def load_exchanged(model: AlignmentModel, arrays: dict[str, np.ndarray]) -> None:
    """Copy the arrays this model has (a site model holds a subset of the global keys)."""
    state = model.state_dict()
    with torch.no_grad():
        for k, v in arrays.items():
            if k in state:
                if tuple(state[k].shape) != tuple(v.shape):
                    raise ValueError(f"array '{k}': shape {tuple(v.shape)} != model {tuple(state[k].shape)}")
                state[k].copy_(torch.from_numpy(np.asarray(v)))


def aggregate_per_parameter(current: dict[str, np.ndarray], updates: list[tuple[float, dict[str, np.ndarray]]]
                            ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Weighted mean of each parameter over the sites that sent it; untouched ones keep `current`
    exactly. -> (new arrays, {key: number of sites that trained it})."""
    out: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    for k, cur in current.items():
        parts = [(w, u[k]) for w, u in updates if k in u]
        count[k] = len(parts)
        if not parts:
            out[k] = cur
            continue
        total = sum(w for w, _ in parts)
        acc = np.zeros(cur.shape, np.float64)
        for w, x in parts:
            if x.shape != cur.shape:
                raise ValueError(f"array '{k}': a site sent shape {x.shape}, expected {cur.shape}")
            acc += w * x.astype(np.float64)
        out[k] = (acc / total).astype(cur.dtype)
    extra = {k for _, u in updates for k in u} - set(current)
    if extra:
        raise ValueError(f"sites sent arrays the global model does not have: {sorted(extra)[:5]}")
    return out, count


def record_bytes(rec: ArrayRecord) -> int:
    return int(sum(len(a.data) for a in rec.values()))


def pooled_norms(model: AlignmentModel, stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The sites' per-feature (count, mean, std) of each view -> the standardisation buffers of its head
    and linear path, pooled as if the rows had been in one place."""
    norm = {}
    for col in model.columns:
        parts = [(float(st[f"{col}/count"][0]), st[f"{col}/mean"].astype(np.float64), st[f"{col}/std"].astype(np.float64))
                 for st in stats if f"{col}/count" in st and st[f"{col}/count"][0] > 0]
        if not parts or not (hasattr(model.heads[col].norm, "mean") or col in model.linear):
            continue
        # pooled mean and unbiased variance from per-site (n, mean, std) (Chan et al. 1979); one site
        # gives back its own float32 statistics exactly, as a centralised Standardize.fit would
        n = sum(p[0] for p in parts)
        mean = sum(k * m for k, m, _ in parts) / n
        m2 = sum((k - 1) * s * s + k * (m - mean) ** 2 for k, m, s in parts)
        std = np.sqrt(m2 / max(n - 1.0, 1.0)).astype(np.float32)
        std = np.maximum(std, np.float32(1e-4))  # as Standardize.fit clamps
        # the head and the linear path standardise the same inputs alike (a from-scratch tower's head has none)
        for prefix, has in (("heads", hasattr(model.heads[col].norm, "mean")), ("linear", col in model.linear)):
            if has:
                norm[f"{prefix}.{col}.norm.mean"], norm[f"{prefix}.{col}.norm.std"] = mean.astype(np.float32), std
    return norm
