"""Loss terms for unpaired items. Both return a scalar that is exactly 0 (with zero gradient) when
every weight is 0, so `weight=0` is the supervised objective bit for bit."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["neighbourhood", "soft_contrastive"]


def soft_contrastive(z: torch.Tensor, cand: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
    """InfoNCE with soft targets (S-CLIP's caption-level pseudo-labels, Mo et al. 2023).

    z (U, D) unpaired items of view a; cand (C, D) candidate partners in view b; targets (U, C) rows
    sum to 1; weights (U,) confidences; scale: logit scale. Out: mean_u w_u * CE(targets_u,
    softmax(scale * z_u . cand)).
    """
    logp = F.log_softmax(scale * z @ cand.T, dim=1)  # (U, C)
    ce = -(targets * logp).sum(1)  # (U,)
    return (weights * ce).mean()


def neighbourhood(feats: torch.Tensor, z: torch.Tensor, weights: torch.Tensor, tau_feat: float = 0.1,
                  tau_z: float = 0.1) -> torch.Tensor:
    """Uni-modal regulariser: keep the head's neighbourhoods those of its tower on unpaired data.

    feats (B, F) tower features (standardised), z (B, D) the head's L2-normalised outputs, weights
    (B,). Out: mean_i w_i * KL(P_feat[i] || P_z[i]) where P[i] is the softmax over j != i of the cosine
    similarities / tau (the SNE-style neighbour distribution, Hinton & Roweis 2002).
    """
    b = len(z)
    if b < 3:
        return z.sum() * 0.0
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    f = F.normalize(feats.reshape(b, -1).float(), dim=1)
    with torch.no_grad():
        p = F.softmax((f @ f.T / tau_feat).masked_fill(eye, float("-inf")), dim=1)  # (B, B)
    logq = F.log_softmax((z @ z.T / tau_z).masked_fill(eye, float("-inf")), dim=1)
    kl = (p * (torch.log(p.clamp(min=1e-30)) - logq.masked_fill(eye, 0.0))).sum(1)  # (B,)
    return (weights * kl).mean()
