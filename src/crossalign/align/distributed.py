"""The distributed context every objective receives explicitly (open_clip's gather-with-grad pattern)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "SINGLE"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> "DistContext":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """All ranks' rows, concatenated in rank order: (world*B, ...). Gradients flow back to
        every rank's own rows (torch.distributed.nn.all_gather is differentiable)."""
        if self.world_size == 1:
            return x
        import torch.distributed.nn as dnn

        return torch.cat(dnn.all_gather(x.contiguous()), 0)

    def gather_nograd(self, x: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return x
        out = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, 0)

    def offset(self, local_batch: int) -> int:
        """Index of this rank's first row in the gathered batch."""
        return self.rank * local_batch


SINGLE = DistContext()
