"""Gradient caching: a contrastive batch far larger than the towers' activations fit in memory
(Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
the GradCache method).

A contrastive loss couples every item with every other, so the batch cannot simply be split into
independent micro-batches. GradCache splits the *backward* instead:
1. embed the whole batch chunk by chunk without keeping any graph (memory: one chunk's activations);
2. compute the loss on the cached embeddings (as leaf tensors) and backpropagate it to them: this
   yields d loss / d embedding for every item, plus the gradients of parameters used in the loss
   itself (logit scale and bias);
3. re-run each chunk with a graph and backpropagate its cached embedding gradient into the tower
   and head parameters, one chunk at a time; gradients accumulate.
By the chain rule the accumulated parameter gradients equal those of the plain full-batch
backward. Dropout masks are replayed exactly: the RNG state before each chunk in step 1 is
restored before the same chunk in step 3. Under torch distributed the loss in step 2 gathers the
embeddings of all ranks as usual, and the trainer averages gradients once after step 3.

BatchNorm layers see per-chunk statistics (as with any micro-batching); their running statistics
are restored after step 1 so each chunk updates them once, as a plain forward would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["chunk_slices", "grad_cache_step"]

EmbedFn = Callable[[str, Any], torch.Tensor]
LossFn = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def chunk_slices(n: int, chunk: int) -> list[slice]:
    if chunk < 1:
        raise ValueError(f"GradCache chunk size must be >= 1, got {chunk}")
    return [slice(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def _take(x: Any, sl: slice) -> Any:
    return x[sl]  # tensors and lists of raw items slice alike


class _RngState:
    """CPU (and current CUDA device) RNG state, to replay dropout masks."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda)


def grad_cache_step(embed: EmbedFn, batch: dict[str, Any], loss_fn: LossFn, chunk: int,
                    module: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Run forward + backward of `loss_fn(embed(col, batch[col]) for every col)` in chunks.

    In: `embed(col, x) -> (b, D)`; `batch` {col: tensor (B, ...) or list of B raw items};
    `loss_fn` {col: (B, D)} -> {"loss": scalar, ...}; `chunk` items per tower call; `module` (the
    model) whose BatchNorm running statistics must not be updated twice. Out: the loss terms,
    detached — parameter `.grad`s hold the full-batch gradients (accumulated, not zeroed).
    """
    n = len(next(iter(batch.values())))
    slices = chunk_slices(n, chunk)
    saved = ({k: b.detach().clone() for k, b in module.named_buffers() if b.is_floating_point()}
             if module is not None else {})
    # Step 1: embeddings without graph, remembering the RNG state before each chunk.
    cached: dict[str, torch.Tensor] = {}
    states: dict[tuple[str, int], _RngState] = {}
    with torch.no_grad():
        for col, x in batch.items():
            parts = []
            for j, sl in enumerate(slices):
                states[(col, j)] = _RngState()
                parts.append(embed(col, _take(x, sl)))  # (b, D)
            cached[col] = torch.cat(parts, 0)  # (B, D)
    if saved:
        with torch.no_grad():
            named = dict(module.named_buffers())  # type: ignore[union-attr]
            for k, v in saved.items():
                named[k].copy_(v)
    after = _RngState()
    # Step 2: loss on leaf copies -> gradient of the loss w.r.t. every embedding.
    leaves = {c: e.detach().requires_grad_(True) for c, e in cached.items()}
    losses = loss_fn(leaves)
    losses["loss"].backward()
    # Step 3: re-run each chunk with a graph and push its embedding gradient into the parameters.
    for col, x in batch.items():
        g = leaves[col].grad
        if g is None:  # a view the loss does not use
            continue
        for j, sl in enumerate(slices):
            states[(col, j)].restore()
            e = embed(col, _take(x, sl))  # (b, D), same dropout masks as in step 1
            e.backward(g[sl])
    after.restore()  # the RNG continues as after one plain forward of the batch
    return {k: v.detach() for k, v in losses.items()}
