"""Hubness correction (CSLS, Conneau et al. 2018), held inside the vectors themselves.

A space fitted on few pairs has *hubs*: gallery items that sit near many queries and are retrieved
for all of them. CSLS ranks a gallery item y of view b for a query x of view a by
    s(x, y) - w * r_a(y),   r_a(y) = mean similarity of y to its k nearest items of view a
over a bank of view-a training items (paired and unpaired). For a corrected pair (a, b) every vector
gains two coordinates (t = sqrt(w)):
    item x of view a: [ t, -w r_b(x) / t ]       item y of view b: [ -w r_a(y) / t, t ]
so <z(x), z(y)> = s(x, y) - w (r_a(y) + r_b(x)). For a -> b, r_b(x) is the same for every candidate y,
so retrieval ranks exactly by CSLS, and b -> a likewise. A slack coordinate of the view's own brings
every vector to the same length sqrt(K) (K = 1 + 2 max_view sum of w), and everything is divided by
it: vectors stay unit length, so evaluation, the FAISS index, `serve` and ONNX export work unchanged.
Cross-view scores are CSLS scores / K. Same-view similarities gain a constant w per corrected pair
plus w r r' and the slacks' product: small, but not the uncorrected cosine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["HubCorrection", "hub_pairs"]


def hub_pairs(columns: list[str], cfg: Mapping[str, Any]) -> list[tuple[str, str, int, float]]:
    """(a, b, k, w) of every corrected pair of `model.hubness`, in the order of `columns`."""
    pairs = cfg.get("pairs") or {}
    known = {f"{a}|{b}" for i, a in enumerate(columns) for b in columns[i + 1:]}
    if set(pairs) - known:
        raise ValueError(f"model.hubness.pairs: {sorted(set(pairs) - known)} are not 'a|b' of two views {columns}")
    out = []
    for i, a in enumerate(columns):
        for b in columns[i + 1:]:
            p = pairs.get(f"{a}|{b}")
            if p is None:
                continue
            k, w = int(p.get("k", 0)), float(p.get("weight", 0))
            if k < 1 or not w > 0:
                raise ValueError(f"model.hubness.pairs['{a}|{b}']: k >= 1 and weight > 0, not {dict(p)}")
            out.append((a, b, k, w))
    return out


class _Bank(nn.Module):
    def __init__(self, n: int, dim: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.register_buffer("z", torch.zeros(n, dim, dtype=dtype))  # (n, dim) rows, saved with the run
        self._f32: tuple[Any, torch.Tensor] | None = None

    def float32(self) -> torch.Tensor:
        """`z` as float32, converted once and reused while `z` is unchanged (its version counter moves
        on every in-place write, e.g. load_state_dict): converting a float16 bank on every call cost
        more than the bank product itself for one served item (2.5 ms vs 1.8 ms on emoji's widest)."""
        z = self.z
        if z.dtype == torch.float32 or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return z.float()  # a trace keeps the conversion in the graph, not a constant copy
        key = (z._version, z.device, z.data_ptr())
        if self._f32 is None or self._f32[0] != key:
            self._f32 = (key, z.float())
        return self._f32[1]


def _count(v: Any, where: str) -> int:
    n = int(v) if isinstance(v, (int, float)) else 0
    if n < 1:
        raise ValueError(f"model.hubness.bank{where}: the number of bank items (>= 1), not {v!r}")
    return n


class HubCorrection(nn.Module):
    """`model.hubness` = {"pairs": {"a|b": {"k": int, "weight": float}}, "bank": {"a|b": {"a": n, "b": n}}};
    the banks (buffers: the views' training items in the space before correction) are filled from a
    run's weights. Each corrected pair keeps its own two float16 banks, cut to the pair's block of the vector
    (`blocks`: {"a|b": (start, end)} of a routed model, where two views share only their pair's block;
    None: the whole vector), so a wide routed run stores only what its scores read. Runs saved before
    (`"bank": {view: n}`, one full-width bank a view) still load."""

    def __init__(self, columns: list[str], cfg: Mapping[str, Any], dim: int,
                 blocks: Mapping[str, tuple[int, int]] | None = None):
        super().__init__()
        self.columns = list(columns)
        self.pairs = hub_pairs(self.columns, cfg)
        if not self.pairs:
            raise ValueError("model.hubness: no pair of the model's views is corrected")
        banks = cfg.get("bank") or {}
        # per view (runs saved before the per-pair banks) or per pair, never mixed
        self.per_view = bool(banks) and all(not isinstance(v, Mapping) for v in banks.values())
        self.slices: dict[str, tuple[int, int]] = {}
        self.banks = nn.ModuleDict()
        if self.per_view:
            for c in sorted({c for a, b, _, _ in self.pairs for c in (a, b)}):
                self.banks[c] = _Bank(_count(banks.get(c), f"['{c}']"), dim)
        for a, b, _, _ in self.pairs:
            key = f"{a}|{b}"
            self.slices[key] = (0, dim) if blocks is None or self.per_view else tuple(blocks[key])  # type: ignore[assignment]
            if self.per_view:
                continue
            sides = banks.get(key)
            if not isinstance(sides, Mapping):
                raise ValueError(f"model.hubness.bank['{key}']: {{view: items}} for both views of the pair")
            w = self.slices[key][1] - self.slices[key][0]
            # float16: half the bytes; choose_hubness scored these same rounded values
            self.banks[key] = nn.ModuleDict({c: _Bank(_count(sides.get(c), f"['{key}']['{c}']"), w, torch.float16)
                                             for c in (a, b)})
        load = {c: sum(w for a, b, _, w in self.pairs if c in (a, b)) for c in self.columns}
        self.K = 1.0 + 2.0 * max(load.values())

    @property
    def width(self) -> int:
        return 2 * len(self.pairs) + len(self.columns)

    def bank(self, key: str, other: str) -> torch.Tensor:
        """(n, w) float32 bank of view `other` for pair `key`."""
        return (self.banks[other] if self.per_view else self.banks[key][other]).float32()

    def penalty(self, z: torch.Tensor, key: str, other: str, k: int) -> torch.Tensor:
        """(B, dim) -> (B,): mean similarity of each vector to its k nearest bank items of view `other`
        (within pair `key`'s block: the only part of the vectors the two views share)."""
        s0, s1 = self.slices[key]
        bank = self.bank(key, other)
        s = z[:, s0:s1] @ bank.T  # (B, n)
        return s.topk(min(k, bank.shape[0]), dim=1).values.mean(1)

    def forward(self, col: str, z: torch.Tensor) -> torch.Tensor:
        """(B, dim) unit vectors of view `col` -> (B, dim + width) unit vectors."""
        zero = z.new_zeros(z.shape[0])
        coords: list[torch.Tensor] = []
        for a, b, k, w in self.pairs:
            t, key = math.sqrt(w), f"{a}|{b}"
            if col == a:
                coords += [zero + t, -w * self.penalty(z, key, b, k) / t]
            elif col == b:
                coords += [-w * self.penalty(z, key, a, k) / t, zero + t]
            else:
                coords += [zero, zero]
        hub = torch.stack(coords, 1)  # (B, 2P)
        # |r| <= 1, so each corrected pair adds at most 2w: the slack is real (clamped against rounding)
        slack = (self.K - (z * z).sum(1) - (hub * hub).sum(1)).clamp(min=0.0).sqrt()  # (B,)
        own = torch.stack([slack if c == col else zero for c in self.columns], 1)  # (B, V)
        return torch.cat([z, hub, own], 1) / math.sqrt(self.K)
