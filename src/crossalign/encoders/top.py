"""Tuning a pretrained tower's last k blocks at the speed of cached features (`tune_last=k`).

A tower is split at block L-k: the frozen lower part runs once per item, when features are
extracted, and the feature cache stores its output activations (content-keyed like any feature,
under a spec of its own: same encoder name and version, options plus `cache` and `storage`). The
top k blocks (and what follows them: pooling, grid, colour statistics) run inside the alignment
model on those activations each epoch and take gradients, like a tower trained from scratch reads
its cached inputs. For a new item (serving, search, a new manifest) `preprocess` runs the lower
part, so the whole tower runs with the tuned top; `encode` runs the whole tower in one go.

An encoder that supports it takes `tune_last` (and `storage`: float16 halves the cache, at a
relative error of about 1e-3 in the activations) and implements `preprocess(raw) -> activations`
and `top(activations) -> features`; its `forward` runs `top` when handed a tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crossalign.encoders.base import EncoderSpec

__all__ = [
    "LOWER",
    "STORAGE",
    "cache_bytes",
    "check_tune_last",
    "freeze_batchnorm",
    "is_lower_spec",
    "lower_spec",
    "no_grad_eval",
    "trainable_only",
]

LOWER = "lower-activations"  # the `cache` option of a lower-part spec
STORAGE = ("float16", "float32")


def check_tune_last(name: str, k: int, n_blocks: int, storage: str) -> int:
    k = int(k)
    if not 0 <= k <= n_blocks:
        raise ValueError(f"{name}: tune_last={k}, but the tower has {n_blocks} blocks (0 <= tune_last <= {n_blocks})")
    if storage not in STORAGE:
        raise ValueError(f"{name}: storage must be one of {', '.join(STORAGE)}, not {storage!r}")
    return k


def lower_spec(spec: EncoderSpec, shape: tuple[int, ...], storage: str) -> EncoderSpec:
    """What the cache stores for a `tune_last` encoder: the lower part's activations per item."""
    return EncoderSpec(name=spec.name, modality=spec.modality, version=spec.version, output_shape=tuple(shape),
                       trainable=False, options={**spec.options, "cache": LOWER, "storage": storage})


def is_lower_spec(spec: EncoderSpec) -> bool:
    return spec.options.get("cache") == LOWER


def freeze_batchnorm(module: nn.Module) -> None:
    """Batch-norm layers keep their frozen ImageNet statistics while the top trains: statistics of
    small contrastive batches would shift every feature the heads were fitted on (as align/lora.py)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def trainable_only(root: nn.Module, names: list[str]) -> None:
    """Freeze `root` except the named submodules."""
    root.requires_grad_(False)
    for n in names:
        root.get_submodule(n).requires_grad_(True)


def cache_bytes(spec: EncoderSpec) -> int:
    """Bytes per item a spec's cache shard holds (float16 or float32 storage)."""
    n = 1
    for s in spec.output_shape:
        n *= int(s)
    return n * (2 if spec.options.get("storage") == "float16" else 4)


def no_grad_eval(module: nn.Module, fn: Any, *args: Any) -> torch.Tensor:
    """Run `fn(*args)` in eval mode without gradients, restoring the module's mode."""
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            return fn(*args)
    finally:
        module.train(was)
