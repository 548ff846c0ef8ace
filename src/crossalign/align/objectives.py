"""Alignment objectives. Each is a small nn.Module:

    forward(emb: dict[view, (B, D) L2-normalised], *, pairs, groups=None, logit_scale, logit_bias,
            dist=DistContext) -> {"loss": total, "loss/<a>-<b>": term, ...}

Under torch distributed every rank passes its local batch; embeddings are gathered with gradient,
each rank scores its own rows against all gathered columns, and the mean over ranks equals the
single-process loss on the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from crossalign.align.distributed import SINGLE, DistContext
from crossalign.align.pairwise import Pairs, sigmoid_block_sum, weighted_total
from crossalign.align.siglip_chunked import SigLIPChunked
from crossalign.config import ModelConfig

__all__ = ["InfoNCE", "SigLIP", "TriSigmoid", "CosineEmbedding", "OBJECTIVES", "OBJECTIVE_REGISTRY",
           "ObjectiveEntry", "build_objective", "check_objective", "objective_entry", "objective_pairs",
           "positive_mask"]

def positive_mask(local_groups: torch.Tensor | None, all_groups: torch.Tensor | None, b: int, n: int,
                  offset: int, device: torch.device) -> torch.Tensor:
    """(b, n) bool: row i (local) and column j (global) are positives (same group, or the same item)."""
    if local_groups is None or all_groups is None:
        m = torch.zeros(b, n, dtype=torch.bool, device=device)
        idx = torch.arange(b, device=device)
        m[idx, idx + offset] = True
        return m
    return local_groups.view(-1, 1) == all_groups.view(1, -1)


class _Pairwise(nn.Module):
    def pair_loss(self, a: torch.Tensor, b_all: torch.Tensor, b: torch.Tensor, a_all: torch.Tensor,
                  pos: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, emb: dict[str, torch.Tensor], *, pairs: Pairs, groups: torch.Tensor | None = None,
                logit_scale: torch.Tensor, logit_bias: torch.Tensor | None = None,
                dist: DistContext = SINGLE) -> dict[str, torch.Tensor]:
        first = next(iter(emb.values()))
        bsz = first.shape[0]
        all_groups = dist.gather_nograd(groups) if groups is not None else None
        gathered = {k: dist.gather(v) for k, v in emb.items()}
        pos = positive_mask(groups, all_groups, bsz, bsz * dist.world_size, dist.offset(bsz), first.device)
        terms = {(a, b): self.pair_loss(emb[a], gathered[b], emb[b], gathered[a], pos, logit_scale, logit_bias)
                 for a, b, _ in pairs}
        return weighted_total(terms, pairs, first.new_zeros(()))


class InfoNCE(_Pairwise):
    """Symmetric InfoNCE / CLIP cross-entropy over in-batch negatives (Radford et al. 2021, CLIP;
    van den Oord et al. 2018). With groups, rows of one group are all positives: the target of each
    row is uniform over its positives (multi-positive, as in SupCon, Khosla et al. 2020), so
    duplicates are not pushed apart as false negatives.

    In: a (B, D), b (B, D) L2-normalised; logit_scale (scalar, already exp'd). Out: scalar mean of the
    a->b and b->a cross-entropies.
    """

    def pair_loss(self, a, b_all, b, a_all, pos, scale, bias):  # type: ignore[override]
        la = scale * a @ b_all.T  # (B, N) rows: local a, cols: all b
        posf = pos.to(la.dtype)  # targets in the logits' dtype (bf16 autocast keeps them exact enough)
        target = posf / posf.sum(1, keepdim=True)  # (B, N)
        lb = scale * b @ a_all.T  # (B, N)
        ce_a = -(target * F.log_softmax(la, 1)).sum(1).mean()
        ce_b = -(target * F.log_softmax(lb, 1)).sum(1).mean()
        return (ce_a + ce_b) / 2


class SigLIP(_Pairwise):
    """Pairwise sigmoid loss (Zhai et al. 2023, SigLIP): every (i, j) pair is an independent binary
    problem, label +1 for positives (same item or group), -1 otherwise, logits scale * a.b + bias.

    In: a, b (B, D) normalised; logit_scale, logit_bias scalars. Out: -sum log sigmoid(label * logit)
    divided by the batch size (the paper's normalisation), averaged over the two directions.
    """

    def pair_loss(self, a, b_all, b, a_all, pos, scale, bias):  # type: ignore[override]
        bias = bias if bias is not None else torch.zeros((), device=a.device)
        return -sigmoid_block_sum(a, b_all, b, a_all, pos, scale, bias) / (2 * a.shape[0])


class CosineEmbedding(_Pairwise):
    """Cosine-embedding loss as torch.nn.CosineEmbeddingLoss: 1 - cos for positives, and
    max(0, cos - margin) for negatives, here every in-batch non-positive pair (both directions).

    In: a, b (B, D). Out: mean positive term + mean negative term.
    """

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin

    def pair_loss(self, a, b_all, b, a_all, pos, scale, bias):  # type: ignore[override]
        sim = a @ b_all.T  # (B, N)
        posf = pos.to(sim.dtype)
        pos_term = ((1 - sim) * posf).sum() / posf.sum()
        neg = (~pos).to(sim.dtype)
        neg_term = ((sim - self.margin).clamp(min=0) * neg).sum() / neg.sum().clamp(min=1)
        return pos_term + neg_term


class TriSigmoid(nn.Module):
    """Three-modality objective: text and sound each agreeing with the image,

        L = -sum_i log sigmoid(x_T^i . x_I^i + x_S^i . x_I^i)         (negatives=False)

    where pairs = [(I, T, w), (I, S, w)] name the anchor I first. Alone it is minimised by collapsing
    every embedding onto one point. `negatives=True` (`tri-sigmoid-neg`) is a different, SigLIP-style
    formula, not the seed formula plus extra terms: every logit, positives included, becomes
    z_ij = s (x_T^i . x_I^j + x_S^i . x_I^j) + b with learnable scale s and bias b, and the loss is
    -sum_ij log sigmoid(y_ij z_ij) with y = +1 for positives and -1 otherwise, so mismatched triples
    are pushed apart. Only `tri-sigmoid-neg` is group-aware; plain `tri-sigmoid` scores each row's
    own triple and ignores groups.

    In: emb with the three views (B, D). Out: {"loss", "loss/pos", "loss/neg"}; the sum is divided by
    the batch size as in SigLIP.
    """

    def __init__(self, negatives: bool = True):
        super().__init__()
        self.negatives = negatives

    def forward(self, emb: dict[str, torch.Tensor], *, pairs: Pairs, groups: torch.Tensor | None = None,
                logit_scale: torch.Tensor, logit_bias: torch.Tensor | None = None,
                dist: DistContext = SINGLE) -> dict[str, torch.Tensor]:
        if len(pairs) != 2 or pairs[0][0] != pairs[1][0]:
            raise ValueError("TriSigmoid needs pairs (anchor, t) and (anchor, s)")
        anchor, t, s = pairs[0][0], pairs[0][1], pairs[1][1]
        xi, xt, xs = emb[anchor], emb[t], emb[s]
        bsz = xi.shape[0]
        if not self.negatives:
            z = (xt * xi).sum(-1) + (xs * xi).sum(-1)  # (B,)
            loss = -F.logsigmoid(z).sum() / bsz
            return {"loss": loss, "loss/pos": loss.detach(), "loss/neg": torch.zeros((), device=xi.device)}
        xi_all = dist.gather(xi)  # (N, D)
        all_groups = dist.gather_nograd(groups) if groups is not None else None
        pos = positive_mask(groups, all_groups, bsz, xi_all.shape[0], dist.offset(bsz), xi.device)
        bias = logit_bias if logit_bias is not None else torch.zeros((), device=xi.device)
        z = logit_scale * (xt @ xi_all.T + xs @ xi_all.T) + bias  # (B, N)
        labels = pos.to(z.dtype) * 2 - 1
        ls = F.logsigmoid(labels * z)
        lpos = -(ls * pos).sum() / bsz
        lneg = -(ls * ~pos).sum() / bsz
        return {"loss": lpos + lneg, "loss/pos": lpos.detach(), "loss/neg": lneg.detach()}


@dataclass(frozen=True)
class ObjectiveEntry:
    """A registered objective and the facts other code needs about it (declared here, never read
    off its name)."""

    factory: Callable[[], nn.Module]
    views: int | None = None  # exactly this many views (None: any number >= 2)
    anchored: bool = False  # binds every view to the anchor, whatever `pairing` says
    group_aware: bool = True  # rows of one group count as positives for each other


OBJECTIVES: dict[str, ObjectiveEntry] = {
    "infonce": ObjectiveEntry(InfoNCE),
    "siglip": ObjectiveEntry(SigLIP),
    # same loss as siglip, ring exchange instead of the global logit matrix
    "siglip-chunked": ObjectiveEntry(SigLIPChunked),
    "cosine": ObjectiveEntry(CosineEmbedding),
    "tri-sigmoid": ObjectiveEntry(lambda: TriSigmoid(negatives=False), views=3, anchored=True, group_aware=False),
    "tri-sigmoid-neg": ObjectiveEntry(lambda: TriSigmoid(negatives=True), views=3, anchored=True),
}
# name -> factory, as before the entries carried facts
OBJECTIVE_REGISTRY: dict[str, Callable[[], nn.Module]] = {k: e.factory for k, e in OBJECTIVES.items()}


def objective_entry(name: str) -> ObjectiveEntry:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective '{name}'; known: {', '.join(OBJECTIVES)}") from None


def check_objective(cfg: ModelConfig) -> ObjectiveEntry:
    """The model config's objective exists and takes its views; -> its entry."""
    e = objective_entry(cfg.objective)
    if e.views is not None and cfg.views and len(cfg.views) != e.views:
        raise ValueError(f"objective '{cfg.objective}' takes exactly {e.views} views (the anchor plus "
                         f"{e.views - 1}), not {len(cfg.views)}")
    return e


def objective_pairs(cfg: ModelConfig) -> Pairs:
    """The (a, b, weight) view pairs the config's objective scores."""
    return cfg.pairs(anchored=objective_entry(cfg.objective).anchored)


def build_objective(name: str) -> nn.Module:
    return objective_entry(name).factory()
