"""Train the LM's top layers from cached bottom-layer activations (`cache_layers`).

A step of the plain bridge runs the whole frozen LM forward and backward (the projector sits before
it), which is what makes CPU training slow: ~1 000 tokens through 30 layers twice per step. With the
projector frozen (the slot heads learn from the scene description alone, no LM), every example's
input sequence is fixed, so the output of the LM's bottom `k` layers is fixed too: it is computed
once per example (no grad) and kept, and each step runs only the layers above — the ones that carry
the LoRA adapters (`layers_to_transform`) — and the answer loss. A step then costs (L - k) / L of the
layers, and the bottom forward is paid once, not once per epoch. Generation needs nothing new: the
same LM with adapters on the same top layers reads the same prefix through the ordinary forward.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["run_layers", "num_layers", "CachedInputs"]


def _decoder(lm: nn.Module) -> Any:
    dec = lm.get_decoder()
    missing = [a for a in ("layers", "rotary_emb", "norm", "config") if not hasattr(dec, a)]
    if missing:
        raise ValueError(f"cache_layers needs a Llama-style decoder; {type(dec).__name__} has no {missing}")
    return dec


def num_layers(lm: nn.Module) -> int:
    return len(_decoder(lm).layers)


def run_layers(lm: nn.Module, h: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, start: int,
               end: int | None = None, final_norm: bool = False) -> torch.Tensor:
    """Decoder layers [start, end) on hidden states h (B, T, H), as the decoder's own forward runs
    them (same causal mask over `mask`, same rotary position embeddings of `pos`)."""
    from transformers.masking_utils import create_causal_mask

    dec = _decoder(lm)
    causal = create_causal_mask(config=dec.config, inputs_embeds=h, attention_mask=mask, cache=None,
                                position_ids=pos)
    pe = dec.rotary_emb(h, position_ids=pos)
    for layer in dec.layers[start:end]:
        h = layer(h, attention_mask=causal, position_embeddings=pe, position_ids=pos)
    return dec.norm(h) if final_norm else h


class CachedInputs:
    """Per example: the bottom `k` layers' output over its whole sequence and its labels.

    `build(x_fn, n)` fills it in batches of examples of similar length (little padding); `batch(idx)`
    right-pads the chosen examples back into (B, T, H) hidden states, mask, positions and labels."""

    def __init__(self, k: int, dtype: torch.dtype = torch.float32):
        self.k, self.dtype = k, dtype
        self.h: list[torch.Tensor] = []  # (T_i, H) each
        self.labels: list[torch.Tensor] = []  # (T_i,) each

    def __len__(self) -> int:
        return len(self.h)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.h)

    @torch.no_grad()  # not inference_mode: the cached tensors are read again under autograd
    def build(self, lm: nn.Module, batches: Sequence[tuple[list[int], Any]], n: int, bar: Any = None) -> "CachedInputs":
        """`batches`: (example indices, callable -> (x, mask, pos, labels) right-padded) for every example."""
        h_all: list[torch.Tensor | None] = [None] * n
        lab_all: list[torch.Tensor | None] = [None] * n
        for idx, make in batches:
            x, mask, pos, lab = make()
            h = run_layers(lm, x, mask, pos, 0, self.k)  # (B, T, H)
            for b, i in enumerate(idx):
                t = int(mask[b].sum())
                h_all[i], lab_all[i] = h[b, :t].to(self.dtype).clone(), lab[b, :t].clone()
            if bar is not None:
                bar.update(len(idx))
        if any(t is None for t in h_all):
            raise RuntimeError("CachedInputs.build: some examples were never computed")
        self.h, self.labels = list(h_all), list(lab_all)  # type: ignore[arg-type]
        return self

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        hs = [self.h[i] for i in idx]
        T, H = max(t.shape[0] for t in hs), hs[0].shape[1]
        x = torch.zeros(len(hs), T, H, dtype=torch.float32)
        mask = torch.zeros(len(hs), T, dtype=torch.long)
        lab = torch.full((len(hs), T), -100, dtype=torch.long)
        for b, (h, i) in enumerate(zip(hs, idx)):
            n = h.shape[0]
            x[b, :n], mask[b, :n], lab[b, :n] = h.float(), 1, self.labels[i]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return x, mask, pos, lab
