"""A toy `vector` modality as a plug-in: a fixed-size `.npy` vector reader and a real (if trivial)
encoder, a fixed seeded random projection. Registered through the registries alone
(`register()`), by tests/test_toy_modality.py in-process and through a `crossalign.plugins`
entry point in the `crossalign serve` process.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from crossalign.encoders import Encoder, EncoderFacts, EncoderSpec
from crossalign.encoders import register as register_encoder
from crossalign.encoders import unregister as unregister_encoder
from crossalign.modalities import Modality, ReadError
from crossalign.modalities import register as register_modality
from crossalign.modalities import unregister as unregister_modality
from crossalign.modalities.base import file_bytes
from crossalign.modalities.client import array_value
from crossalign.modalities.sensor import load_npy

__all__ = ["VectorReader", "VectorProjection", "register", "unregister", "MAX_SIZE"]

MAX_SIZE = 4096  # values per vector


class VectorReader:
    """A 1-D vector of at most MAX_SIZE finite numbers, from a `.npy` file, its bytes or a list."""

    name = "vector"

    def read(self, value: Any, base_dir: Path | None = None) -> np.ndarray:
        if isinstance(value, (np.ndarray, list, tuple)):
            arr, shown = np.asarray(value), "<array>"
        else:
            data = value if isinstance(value, (bytes, bytearray)) else file_bytes(value, base_dir)
            shown = "<bytes>" if isinstance(value, (bytes, bytearray)) else value
            arr = load_npy(io.BytesIO(bytes(data)), shown)  # header checked first; never unpickles
        if arr.dtype.kind not in "biuf":
            raise ReadError(shown, f"a vector holds numbers, not {arr.dtype}")
        if arr.ndim != 1 or not 1 <= arr.size <= MAX_SIZE:
            raise ReadError(shown, f"a vector is 1-D with 1..{MAX_SIZE} values, got shape {arr.shape}")
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ReadError(shown, "vector contains NaN or infinite values")
        return out

    def content_key(self, value: Any, base_dir: Path | None = None) -> bytes:
        return self.read(value, base_dir).tobytes()


class VectorProjection(Encoder):
    """x -> x W / |x W|, W a (n, dim) Gaussian matrix drawn from a fixed seed: a frozen tower."""

    def __init__(self, input_shape: Sequence[int], dim: int = 32, seed: int = 0):
        super().__init__()
        (n,) = (int(s) for s in input_shape)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w", torch.randn(n, dim, generator=g) / n**0.5)  # (n, dim)
        self.spec = EncoderSpec(name="vector:projection", modality="vector", version="seeded-gauss/1",
                                output_shape=(dim,), trainable=False,
                                options={"input_shape": [n], "dim": dim, "seed": seed})

    def forward(self, batch: Sequence[Any]) -> torch.Tensor:
        x = torch.from_numpy(np.stack([np.asarray(v, np.float32) for v in batch]))  # (B, n)
        if x.shape[1] != self.w.shape[0]:
            raise ValueError(f"vector has {x.shape[1]} values, this encoder takes {self.w.shape[0]}")
        return torch.nn.functional.normalize(x @ self.w, dim=-1)  # (B, dim)


VECTOR = Modality("vector", VectorReader, client=array_value("vector"), suffixes=("vec",),
                  json_type=list[Any] | str, same_shape=True, help="1-D .npy vector (a list over HTTP)")


def register() -> None:
    """The plug-in's entry point (`crossalign.plugins` group)."""
    register_modality(VECTOR)
    register_encoder("vector:projection", VectorProjection, EncoderFacts(needs_input_shape=True),
                     default_for="vector")


def unregister() -> None:
    unregister_encoder("vector:projection")
    unregister_modality("vector")
