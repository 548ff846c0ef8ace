"""The fused model: alignment model (per-modality aligned projections) -> token streams -> fusion
module -> task head (classification or per-word tagging)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from crossalign.align.heads import ProjectionHead, Standardize
from crossalign.align.model import AlignmentModel
from crossalign.encoders import EncoderSpec
from crossalign.fuse.evidence import WORD_EVIDENCE, OcclusionEvidence
from crossalign.fuse.modules import FusionOutput, Stream, build_fusion

__all__ = ["FusionModel", "FusionResult", "StreamEncoder"]


class StreamEncoder(nn.Module):
    """One modality -> a token stream of width d.

    Token 0 is the modality's aligned embedding (the alignment head's output). Token features
    (text words, image grid cells, audio frames), when the modality has a token view, follow,
    each standardised and projected; where the alignment head accepts a single token (its input is
    one vector of the token's size, as for pooled MiniLM vs MiniLM words, or the pooled image vector
    vs its grid cells) the head is also applied token by token, so every token carries its own
    aligned (shared-space) features: that is what alignment pre-training brings to token tasks.
    """

    def __init__(self, col: str, align: AlignmentModel, token_shape: tuple[int, ...] | None, d: int,
                 dropout: float, normalize_tokens: bool):
        super().__init__()
        self.col = col
        dim = align.out_dim
        self.glob = nn.Linear(dim, d)
        self.n_tok = int(token_shape[0]) if token_shape else 0
        self.normalize_tokens = normalize_tokens
        if token_shape:
            self.std = Standardize((int(token_shape[-1]),))
            self.tok = nn.Linear(int(token_shape[-1]), d)
            head = align.heads[col]
            self.tokenwise = (col not in align.towers and isinstance(head, ProjectionHead)
                              and head.in_shape == (int(token_shape[-1]),))
            self.tok_aligned = nn.Linear(dim, d) if self.tokenwise else None
        self.pos = nn.Parameter(torch.randn(1 + self.n_tok, d) * 0.02)
        self.missing = nn.Parameter(torch.randn(1, 1 + self.n_tok, d) * 0.02)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    @torch.no_grad()
    def fit(self, tokens: torch.Tensor, mask: torch.Tensor) -> None:
        """Token standardisation statistics from training tokens (B, T, D) with mask (B, T)."""
        self.std.fit(tokens[mask].float())

    def aligned_tokens(self, align: AlignmentModel, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) tokens -> (B, T, dim): each token through the view's projection as a pooled input
        would go (head plus, where the run has one, its closed-form linear path)."""
        src = F.normalize(x, dim=-1) if self.normalize_tokens else x
        return align.project(self.col, src.reshape(-1, x.shape[-1])).view(x.shape[0], x.shape[1], -1)

    def forward(self, align: AlignmentModel, pooled: torch.Tensor, tokens: torch.Tensor | None,
                mask: torch.Tensor | None, present: torch.Tensor) -> Stream:
        z = align.embed(self.col, pooled)  # (B, dim)
        parts = [self.glob(z).unsqueeze(1)]  # (B, 1, d)
        b = z.shape[0]
        valid = [torch.ones(b, 1, dtype=torch.bool, device=z.device)]
        if self.n_tok and tokens is not None:
            x = tokens.float()
            h = self.tok(self.std(x))  # (B, T, d)
            if self.tok_aligned is not None:
                h = h + self.tok_aligned(self.aligned_tokens(align, x))
            parts.append(h)
            valid.append(mask if mask is not None else torch.ones(b, self.n_tok, dtype=torch.bool, device=z.device))
        t = torch.cat(parts, 1) + self.pos[: sum(p.shape[1] for p in parts)]  # (B, 1 + T, d)
        # An absent modality keeps its positions (a tagger still needs word slots) but no content.
        miss = self.missing[:, : t.shape[1]] + self.pos[: t.shape[1]]
        t = torch.where(present.view(-1, 1, 1), t, miss.expand_as(t))
        return Stream(self.drop(self.norm(t)), torch.cat(valid, 1), present)


@dataclass
class FusionResult:
    logits: torch.Tensor  # (B, C) or (B, W, C)
    fusion: FusionOutput


class FusionModel(nn.Module):
    def __init__(self, align: AlignmentModel, modalities: list[str], token_specs: dict[str, EncoderSpec],
                 kind: str, num_classes: int, fusion: str = "cross-attention", d: int = 128, heads: int = 4,
                 layers: int = 2, dropout: float = 0.1, query: str = "text", word_evidence: str = "none"):
        super().__init__()
        if kind not in ("classify", "tag"):
            raise ValueError(f"kind must be classify or tag, not {kind!r}")
        self.align, self.modalities, self.kind, self.query, self.d = align, list(modalities), kind, query, d
        self.streams = nn.ModuleDict({
            c: StreamEncoder(c, align, tuple(token_specs[c].output_shape) if c in token_specs else None, d, dropout,
                             normalize_tokens=align.specs[c].modality == "text")
            for c in self.modalities})
        self.has_query = query in self.modalities
        if kind == "tag" and not self.has_query:
            # Tagging without the text modality (an ablation): word slots with position only.
            self.query_pos = nn.Parameter(torch.randn(1, int(token_specs[query].output_shape[0]), d) * 0.02)
        names = ["query"] + [c for c in self.modalities if c != query]
        self.fusion = build_fusion(fusion, d, names, heads=heads, layers=layers, dropout=dropout)
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, num_classes))
        if word_evidence not in WORD_EVIDENCE:
            raise ValueError(f"word_evidence must be one of {', '.join(WORD_EVIDENCE)}, not {word_evidence!r}")
        # Per-word evidence needs words and something to compare them with; otherwise it is a no-op.
        ctx = [c for c in self.modalities if c != query]
        source = WORD_EVIDENCE[word_evidence]
        tok, pooled = token_specs.get(query), align.specs.get(query)
        fits = (tok is not None and pooled is not None and query not in align.towers
                and tuple(tok.output_shape[-1:]) == tuple(pooled.output_shape))
        if source == "auto":
            source = "tokens" if fits else None
        if source == "tokens" and not fits and kind == "tag" and self.has_query:
            raise ValueError(f"word_evidence '{word_evidence}' reads the '{query}' token view's word states as "
                             f"inputs of its alignment head: it needs a token view whose feature size is the "
                             f"pooled view's and no trainable tower; use 'occlusion'")
        self.evidence = (OcclusionEvidence(query, ctx, source) if source and kind == "tag"
                         and self.has_query and ctx else None)
        if self.evidence is not None:
            # into the word tokens before fusion (words can compare their evidence) and straight to the head
            self.ev_in = nn.Sequential(nn.Linear(self.evidence.width, d), nn.GELU(), nn.Linear(d, d))
            self.ev_out = nn.Sequential(nn.Linear(self.evidence.width, d), nn.GELU(), nn.Linear(d, d))

    def fit_normalizers(self, feats: dict[str, torch.Tensor], word_mask: torch.Tensor) -> None:
        for c, s in self.streams.items():
            if s.n_tok:
                tok = feats[f"{c}:tokens"]
                mask = word_mask if c == self.query else torch.ones(tok.shape[:2], dtype=torch.bool)
                s.fit(tok, mask)
        if self.evidence is not None:
            self.evidence.fit(self.align, feats, word_mask)

    def forward(self, feats: dict[str, torch.Tensor], word_mask: torch.Tensor,
                present: dict[str, torch.Tensor] | None = None) -> FusionResult:
        """feats: `<col>` pooled and `<col>:tokens` per modality; word_mask (B, W); present: (B,) bool
        per modality (default all present)."""
        b, width = word_mask.shape
        dev = word_mask.device
        present = present or {}
        # Words past the longest text of the batch are padding everywhere: skip their compute.
        used = max(1, int(word_mask.sum(1).max())) if width else 0
        if used < width:
            word_mask = word_mask[:, :used]
            qt = f"{self.query}:tokens"
            if qt in feats:
                feats = {**feats, qt: feats[qt][:, :used]}
        streams: dict[str, Stream] = {}
        for c, enc in self.streams.items():
            p = present.get(c, torch.ones(b, dtype=torch.bool, device=dev))
            tok = feats.get(f"{c}:tokens")
            mask = word_mask if c == self.query and tok is not None else None
            streams[c] = enc(self.align, feats[c], tok, mask, p)
        ev = None
        if self.has_query:
            q = streams.pop(self.query)
            if self.kind == "tag":  # per-word outputs: drop the aligned global token from the query
                q = Stream(q.tokens[:, 1:], q.mask[:, 1:], q.present)
            if self.evidence is not None:
                ev = self.evidence(self.align, feats, word_mask, present)  # (B, used, 3M)
                ev = ev * q.present.to(ev.dtype).view(b, 1, 1)  # no text, no word evidence
                q = Stream(q.tokens + self.ev_in(ev), q.mask, q.present)
        elif self.kind == "tag":
            q = Stream(self.query_pos[:, :used].expand(b, -1, -1), word_mask,
                       torch.zeros(b, dtype=torch.bool, device=dev))
        else:
            q = Stream(torch.zeros(b, 0, self.d, device=dev), word_mask.new_zeros(b, 0),
                       torch.zeros(b, dtype=torch.bool, device=dev))  # no query tokens: CLS / pooled only
        out = self.fusion(q, streams)
        if self.kind == "classify":
            return FusionResult(self.head(out.pooled), out)
        tokens = out.tokens if ev is None else out.tokens + self.ev_out(ev)
        logits = self.head(tokens)  # (B, used, C)
        if used < width:  # back to the caller's width; padding words get zero logits
            logits = torch.cat([logits, logits.new_zeros(b, width - used, logits.shape[-1])], 1)
        return FusionResult(logits, out)
