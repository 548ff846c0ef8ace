"""Float comparisons that hold on any CPU.

float32 sums come out in a CPU-dependent order, so an absolute tolerance that passes on one machine
fails on another (a gradient of magnitude 10 differs by ~1e-5 across CPUs). Compare each tensor
relative to its own largest magnitude instead.
"""

from __future__ import annotations

import torch

__all__ = ["assert_close_scaled"]


def assert_close_scaled(got: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-4, msg: str = "",
                        floor: float = 0.0) -> None:
    """max|got - ref| <= rtol * max(max|ref|, floor): a relative bound on the whole tensor.

    `floor`: the smallest magnitude that counts, for tensors that are zero in exact arithmetic (the
    gradient of an attention key bias) and hold only rounding noise; pass a fraction of the largest
    magnitude among related tensors (e.g. 1e-2 x the largest gradient of the model)."""
    assert got.shape == ref.shape, f"{msg}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    err = float((got.double() - ref.double()).abs().max()) if ref.numel() else 0.0
    assert err <= rtol * max(scale, floor, 1e-12), f"{msg}: max abs diff {err:.3g} > {rtol} x max |ref| {scale:.3g}"
