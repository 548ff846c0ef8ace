"""Linear warmup then cosine decay to zero, as a LambdaLR multiplier."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f
