"""Whether bf16 autocast pays on a device.

On a CPU without native bf16 (no AVX512-BF16/AMX, nor oneDNN's AVX512 bf16 path; e.g. an AVX2-only
AMD EPYC) PyTorch emulates bf16 matmuls: a SmolLM2-135M step ran 3.4x slower forward and 65x slower
backward than fp32 there (`benchmarks/bf16_cpu.py`). So autocast is asked for by the user or a
recipe, and used only where the hardware makes it faster.
"""

from __future__ import annotations

import functools
import logging

import torch

__all__ = ["bf16_autocast_pays"]

log = logging.getLogger(__name__)


@functools.cache
def bf16_autocast_pays(device_type: str = "cpu") -> bool:
    """True where bf16 autocast runs natively on `device_type` ("cpu" or "cuda")."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: assume emulation
        native = False
    if not native:
        log.info("bf16 autocast is off: this CPU has no native bf16, so it would run emulated and "
                 "several times slower than fp32")
    return native
