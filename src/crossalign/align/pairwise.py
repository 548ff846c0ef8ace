"""Pieces shared by the pairwise objectives (`objectives.py`) and chunked SigLIP (`siglip_chunked.py`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["Pairs", "sigmoid_block_sum", "weighted_total"]

Pairs = list[tuple[str, str, float]]


def sigmoid_block_sum(a: torch.Tensor, b_held: torch.Tensor, b: torch.Tensor, a_held: torch.Tensor,
                      pos: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """sum over the block of log sigmoid(label * logit), both directions (SigLIP, Zhai et al. 2023).

    a, b: local rows (B, D); b_held, a_held: the columns scored against them (N, D); pos (B, N) bool.
    """
    la = scale * a @ b_held.T + bias  # (B, N) local a vs held b
    lb = scale * b @ a_held.T + bias  # (B, N)
    labels = pos.to(la.dtype) * 2 - 1  # +1 positives, -1 negatives, in the logits' dtype
    return F.logsigmoid(labels * la).sum() + F.logsigmoid(labels * lb).sum()


def weighted_total(terms: dict[tuple[str, str], torch.Tensor], pairs: Pairs, zero: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
    """{"loss": sum_w w * term / sum_w w, "loss/<a>-<b>": term (detached)} over the configured pairs."""
    out: dict[str, torch.Tensor] = {}
    total, wsum = zero, 0.0
    for a, b, w in pairs:
        out[f"loss/{a}-{b}"] = terms[(a, b)].detach()
        total = total + w * terms[(a, b)]
        wsum += w
    out["loss"] = total / max(wsum, 1e-12)
    return out
