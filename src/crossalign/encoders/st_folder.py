"""`hf:<folder>` where the folder is a sentence-transformers model (it has `modules.json`), such as a
text view exported by `crossalign export --format sentence-transformers`: encodes with
`SentenceTransformer`, so an exported space can be a frozen tower of a new run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import torch

from crossalign.encoders.base import Encoder, EncoderSpec

__all__ = ["SentenceTransformerEncoder", "is_st_folder"]


def is_st_folder(path: str) -> bool:
    return (Path(path) / "modules.json").is_file()


class SentenceTransformerEncoder(Encoder):
    def __init__(self, path: str, batch_size: int = 32):
        super().__init__()
        from sentence_transformers import SentenceTransformer

        self.path, self.batch_size = path, int(batch_size)
        self.st = SentenceTransformer(path, device="cpu", local_files_only=True)
        dim = int(self.st.get_sentence_embedding_dimension() or 0)
        # The weights are part of the version: two exports in one folder must not share cache entries.
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(path).rglob("*.safetensors")))).hexdigest()
        self.spec = EncoderSpec(name=f"hf:{path}", modality="text", version=f"sentence-transformers/{digest[:12]}",
                                output_shape=(dim,), trainable=False, options={"tower": "text"})

    def encode(self, batch: Sequence[str]) -> torch.Tensor:
        z = self.st.encode(list(batch), batch_size=self.batch_size, convert_to_tensor=True, show_progress_bar=False)
        return z.float().cpu()

    def forward(self, batch: Sequence[str]) -> torch.Tensor:
        return self.encode(batch)
