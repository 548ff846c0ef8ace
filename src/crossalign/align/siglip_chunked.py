"""SigLIP without the global logit matrix: the chunked / neighbour-exchange variant (Zhai et al.
2023, SigLIP, section 3.3 "efficient chunked implementation"; the neighbour exchange follows
open_clip's `SigLipLoss`, which sends columns one way around the ring).

The sigmoid loss is a sum of independent per-pair terms, so it can be computed block by block.
Each rank scores its local rows against its own local columns, then passes its columns to the next
rank around a ring (world_size - 1 steps) and scores the block it received. At any time a rank
holds one (B, B) block instead of the (B, world*B) slab of the gather-based `SigLIP`; memory no
longer grows with the number of ranks. The exchange is differentiable: in the backward pass the
gradients of the received columns travel back along the ring to the rank that owns them.

The result (loss and gradients, after the trainer averages gradients over ranks) equals `SigLIP`
on the global batch; tests/test_distributed.py checks this on 2 Gloo processes.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import nn

from crossalign.align.distributed import SINGLE, DistContext
from crossalign.align.pairwise import Pairs, sigmoid_block_sum, weighted_total

__all__ = ["SigLIPChunked", "neighbour_exchange"]


def _exchange(x: torch.Tensor, to_rank: int, from_rank: int) -> torch.Tensor:
    recv = torch.empty_like(x)
    ops = [tdist.P2POp(tdist.isend, x.contiguous(), to_rank), tdist.P2POp(tdist.irecv, recv, from_rank)]
    for req in tdist.batch_isend_irecv(ops):
        req.wait()
    return recv


class _NeighbourExchange(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, to_rank: int, from_rank: int) -> torch.Tensor:  # type: ignore[override]
        ctx.to_rank, ctx.from_rank = to_rank, from_rank
        return _exchange(x, to_rank, from_rank)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        # The gradient of what we received belongs to the rank we received it from.
        return _NeighbourExchange.apply(grad, ctx.from_rank, ctx.to_rank), None, None


def neighbour_exchange(x: torch.Tensor, dist: DistContext, grad: bool = True) -> torch.Tensor:
    """Send `x` to rank+1 and return what rank-1 sent (a ring step); differentiable if `grad`."""
    to_rank, from_rank = (dist.rank + 1) % dist.world_size, (dist.rank - 1) % dist.world_size
    if grad:
        return _NeighbourExchange.apply(x, to_rank, from_rank)
    return _exchange(x, to_rank, from_rank)


class SigLIPChunked(nn.Module):
    """Pairwise sigmoid loss computed one (B, B) block at a time over a ring of ranks.

    In/out as `objectives.SigLIP`: emb {view: (B, D) normalised}, pairs, optional groups, logit
    scale and bias -> {"loss", "loss/<a>-<b>"}; the sum over all pairs (i, j) of -log sigmoid(label *
    logit) divided by the local batch size, averaged over the two directions.
    """

    def forward(self, emb: dict[str, torch.Tensor], *, pairs: Pairs, groups: torch.Tensor | None = None,
                logit_scale: torch.Tensor, logit_bias: torch.Tensor | None = None,
                dist: DistContext = SINGLE) -> dict[str, torch.Tensor]:
        first = next(iter(emb.values()))
        bsz, dev = first.shape[0], first.device
        bias = logit_bias if logit_bias is not None else torch.zeros((), device=dev)
        eye = torch.eye(bsz, dtype=torch.bool, device=dev)
        views = sorted({v for a, b, _ in pairs for v in (a, b)})
        sums = {(a, b): first.new_zeros(()) for a, b, _ in pairs}

        def score(held: dict[str, torch.Tensor], pos: torch.Tensor) -> None:
            for a, b, _ in pairs:  # pos (B, B): local rows vs the held block's columns
                sums[(a, b)] = sums[(a, b)] + sigmoid_block_sum(emb[a], held[b], emb[b], held[a], pos,
                                                                logit_scale, bias)

        score(emb, eye if groups is None else groups.view(-1, 1) == groups.view(1, -1))
        # Ring: after step s this rank holds the columns of rank (rank - s) mod world.
        held_cat = torch.cat([emb[v] for v in views], 1)  # (B, V*D) one message per step
        held_groups = groups
        d = first.shape[1]
        for _ in range(dist.world_size - 1):
            held_cat = neighbour_exchange(held_cat, dist)
            if groups is not None:
                held_groups = neighbour_exchange(held_groups, dist, grad=False)  # type: ignore[arg-type]
            held = {v: held_cat[:, i * d:(i + 1) * d] for i, v in enumerate(views)}  # (B, D) each
            pos = (torch.zeros_like(eye) if groups is None
                   else groups.view(-1, 1) == held_groups.view(1, -1))  # type: ignore[union-attr]
            score(held, pos)
        terms = {k: -v / (2 * bsz) for k, v in sums.items()}
        return weighted_total(terms, pairs, first.new_zeros(()))
