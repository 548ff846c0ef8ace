"""Fusion modules over per-modality token streams, selectable by name (`FUSIONS`).

Every module takes the query stream (the tokens that get per-token outputs, usually the text
words; it may have zero tokens) and a dict of context streams, and returns a `FusionOutput`:
per-query-token features (B, Tq, d), an item-level vector (B, d), and what it can show for
inspection (attention weights, modality gates). A modality absent for an item (`present` False)
is left out of the fusion for that item, so any subset of modalities can be missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "FUSIONS",
    "ConcatFusion",
    "CrossAttentionFusion",
    "FusionOutput",
    "GatedFusion",
    "Stream",
    "build_fusion",
    "masked_mean",
]


@dataclass
class Stream:
    tokens: torch.Tensor  # (B, T, d)
    mask: torch.Tensor  # (B, T) bool: real (not padding) tokens
    present: torch.Tensor  # (B,) bool: modality available for this item


@dataclass
class FusionOutput:
    tokens: torch.Tensor  # (B, Tq, d) fused features per query token
    pooled: torch.Tensor  # (B, d) fused item-level features
    attention: torch.Tensor | None = None  # (B, heads, 1 + Tq, 1 + Tk) last cross-attention (CLS first)
    key_layout: list[tuple[str, int, int]] | None = None  # (modality, start, end) columns of `attention`
    gates: torch.Tensor | None = None  # (B, M) per-modality weights (gated fusion), order of `names`


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, d), (B, T) bool -> (B, d); zero where no token is real."""
    w = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


def _pooled(s: Stream) -> torch.Tensor:
    return masked_mean(s.tokens, s.mask & s.present.unsqueeze(1))  # (B, d), zero when absent


class ConcatFusion(nn.Module):
    """Late fusion: each modality's mean token, concatenated with presence flags -> MLP.
    Query tokens get [own token, fused item vector] -> MLP."""

    def __init__(self, d: int, names: list[str], dropout: float = 0.1, **_: object):
        super().__init__()
        self.names = list(names)
        m = len(self.names)
        self.item = nn.Sequential(nn.Linear(m * d + m, d), nn.GELU(), nn.Dropout(dropout), nn.LayerNorm(d))
        self.tok = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(dropout), nn.LayerNorm(d))

    def forward(self, query: Stream, context: dict[str, Stream]) -> FusionOutput:
        streams = {"query": query, **context}
        parts = [_pooled(streams[n]) for n in self.names]
        flags = torch.stack([streams[n].present.float() for n in self.names], 1)  # (B, M)
        pooled = self.item(torch.cat([*parts, flags], -1))  # (B, d)
        rep = pooled.unsqueeze(1).expand(-1, query.tokens.shape[1], -1)  # (B, Tq, d)
        return FusionOutput(self.tok(torch.cat([query.tokens, rep], -1)), pooled)


class GatedFusion(nn.Module):
    """Gated weighted sum: learned per-modality gates (softmax over the modalities present for the
    item) weight each modality's projected mean token. Query tokens gate between themselves and the
    other modalities' vectors with per-token gates."""

    def __init__(self, d: int, names: list[str], dropout: float = 0.1, **_: object):
        super().__init__()
        self.names = list(names)
        self.value = nn.ModuleDict({n: nn.Linear(d, d) for n in self.names})
        self.score = nn.ModuleDict({n: nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1))
                                    for n in self.names})
        self.tok_score = nn.Sequential(nn.Linear(2 * d, d), nn.Tanh(), nn.Linear(d, 1))
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Stream, context: dict[str, Stream]) -> FusionOutput:
        streams = {"query": query, **context}
        pooled_m = torch.stack([_pooled(streams[n]) for n in self.names], 1)  # (B, M, d)
        present = torch.stack([streams[n].present for n in self.names], 1)  # (B, M)
        logits = torch.cat([self.score[n](pooled_m[:, k]) for k, n in enumerate(self.names)], -1)  # (B, M)
        logits = logits.masked_fill(~present, -1e4)  # absent modalities get (numerically) zero weight
        gates = logits.softmax(-1) * present.any(1, keepdim=True)  # all absent -> all zero
        values = torch.stack([self.value[n](pooled_m[:, k]) for k, n in enumerate(self.names)], 1)  # (B, M, d)
        pooled = self.norm(self.drop((gates.unsqueeze(-1) * values).sum(1)))  # (B, d)
        # Per token: candidates are the token itself and each context modality's value vector.
        q = query.tokens  # (B, Tq, d)
        tq = q.shape[1]
        ctx_names = [n for n in self.names if n != "query"]
        cand = [q] + [values[:, self.names.index(n)].unsqueeze(1).expand(-1, tq, -1) for n in ctx_names]
        cand_t = torch.stack(cand, 2)  # (B, Tq, 1 + M', d)
        ok = torch.stack([query.present] + [streams[n].present for n in ctx_names], 1)  # (B, 1 + M')
        s = self.tok_score(torch.cat([q.unsqueeze(2).expand_as(cand_t), cand_t], -1)).squeeze(-1)  # (B, Tq, 1+M')
        # The token itself is always a candidate (its features carry position even without content).
        ok = ok.clone()
        ok[:, 0] = True
        g = s.masked_fill(~ok.unsqueeze(1), -1e4).softmax(-1)  # (B, Tq, 1 + M')
        tokens = self.norm(q + self.drop((g.unsqueeze(-1) * cand_t).sum(2)))  # (B, Tq, d)
        return FusionOutput(tokens, pooled, gates=gates)


class _CrossBlock(nn.Module):
    """Pre-norm block: self-attention over the query tokens, cross-attention to the context, FFN."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.n1, self.n2, self.n3, self.nk = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.cross = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_pad: torch.Tensor, k: torch.Tensor, k_pad: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.n1(x)
        x = x + self.drop(self.self_attn(h, h, h, key_padding_mask=x_pad, need_weights=False)[0])
        kv = self.nk(k)
        a, w = self.cross(self.n2(x), kv, kv, key_padding_mask=k_pad, need_weights=True,
                          average_attn_weights=False)  # w: (B, heads, Tx, Tk)
        x = x + self.drop(a)
        x = x + self.drop(self.ff(self.n3(x)))
        return x, w


class CrossAttentionFusion(nn.Module):
    """Query tokens (with a learned CLS token in front) attend to the tokens / grid cells / frames of
    every other modality present. A learned null key keeps attention defined when all context is
    missing. `pooled` is the CLS output; `attention` holds the last layer's weights."""

    def __init__(self, d: int, names: list[str], heads: int = 4, layers: int = 2, dropout: float = 0.1, **_: object):
        super().__init__()
        self.names = list(names)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.null = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.blocks = nn.ModuleList([_CrossBlock(d, heads, dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)

    def forward(self, query: Stream, context: dict[str, Stream]) -> FusionOutput:
        b = query.tokens.shape[0]
        x = torch.cat([self.cls.expand(b, -1, -1), query.tokens], 1)  # (B, 1 + Tq, d)
        # Query positions stay attendable even when text is absent (its tokens then carry only position).
        x_valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), query.mask], 1)
        keys, valid, layout, start = [self.null.expand(b, -1, -1)], [torch.ones(b, 1, dtype=torch.bool,
                                                                                device=x.device)], [], 1
        for n in self.names:
            if n == "query" or n not in context:
                continue
            s = context[n]
            keys.append(s.tokens)
            valid.append(s.mask & s.present.unsqueeze(1))
            layout.append((n, start, start + s.tokens.shape[1]))
            start += s.tokens.shape[1]
        k = torch.cat(keys, 1)  # (B, 1 + Tk, d)
        k_pad = ~torch.cat(valid, 1)  # (B, 1 + Tk) True = ignore
        w = None
        for blk in self.blocks:
            x, w = blk(x, ~x_valid, k, k_pad)
        x = self.norm(x)
        return FusionOutput(x[:, 1:], x[:, 0], attention=w, key_layout=layout)


# name -> factory(d, names, **options); names include "query" for the query stream.
FUSIONS: dict[str, Callable[..., nn.Module]] = {
    "concat": ConcatFusion,
    "gated": GatedFusion,
    "cross-attention": CrossAttentionFusion,
}


def build_fusion(name: str, d: int, names: list[str], **options: object) -> nn.Module:
    try:
        factory = FUSIONS[name]
    except KeyError:
        raise ValueError(f"unknown fusion '{name}'; known: {', '.join(FUSIONS)}") from None
    return factory(d, names, **options)

