"""Slot prefix: one pooled embedding -> per-object attribute words the frozen LM can read.

A pooled shared-space vector keeps position (nearest-caption retrieval reads it well), but a
projector trained for a few hundred LM steps does not learn to spell it out. This projector makes
the prefix structured: an MLP predicts, for each of `slots` objects in reading order (top-left
first, as the captions list them), whether it is there and its size, colour, shape, row and column;
each prediction becomes the probability-weighted mix of the LM's own embeddings of those words
(" small", " red", " top", " left" ...), an absent slot becomes " none". So the prefix is a soft
sentence in the LM's vocabulary, `free` learned vectors after it steer the format, and the
attribute heads get a cheap auxiliary cross-entropy from the scene description (seconds on a CPU
for every training row, no LM forward). It needs only the pooled vector, so audio and radar
embeddings use it unchanged. Scenes vocabulary only: other data uses `mlp`/`linear`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossalign.datasets.scenes.scene import COLORS, SHAPES, SIZES

__all__ = ["SlotProjector", "SLOT_FIELDS", "slot_targets", "slot_word_embeddings"]

ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
# (field, values) in prefix order per slot; the targets array has one column per field.
SLOT_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("size", tuple(SIZES)), ("color", tuple(COLORS)), ("shape", tuple(SHAPES)), ("row", ROWS), ("col", COLS))
NONE_WORD = "none"


def slot_word_embeddings(embed: nn.Module, tokenizer: Any) -> dict[str, torch.Tensor]:
    """field -> (n_values, H) LM input embeddings of each value word (mid-sentence form, leading
    space; the mean over its pieces where a word is several tokens); 'none' -> (1, H)."""
    w = embed.weight.detach().float()

    def vec(word: str) -> torch.Tensor:
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        return w[torch.tensor(ids)].mean(0)  # (H,)

    out = {f: torch.stack([vec(v) for v in values]) for f, values in SLOT_FIELDS}
    out[NONE_WORD] = vec(NONE_WORD)[None]
    return out


def slot_targets(objects: Sequence[Sequence[dict[str, Any]]], slots: int) -> np.ndarray:
    """(N, slots, 1 + n_fields) int64: presence, then each field's value index (-1: no object)."""
    t = np.full((len(objects), slots, 1 + len(SLOT_FIELDS)), -1, dtype=np.int64)
    t[:, :, 0] = 0
    for i, objs in enumerate(objects):
        for s, o in enumerate(sorted(objs, key=lambda o: tuple(o["cell"]))[:slots]):  # reading order
            r, c = int(o["cell"][0]), int(o["cell"][1])
            vals = {"size": o["size"], "color": o["color"], "shape": o["shape"], "row": ROWS[r], "col": COLS[c]}
            t[i, s, 0] = 1
            for f, (name, values) in enumerate(SLOT_FIELDS):
                t[i, s, 1 + f] = values.index(vals[name])
    return t


class SlotProjector(nn.Module):
    def __init__(self, dim: int, lm_hidden: int, words: dict[str, torch.Tensor], slots: int = 3,
                 free: int = 4, hidden: int = 1024, target_norm: float = 1.0):
        super().__init__()
        self.dim, self.lm_hidden, self.slots, self.free = dim, lm_hidden, slots, free
        self.k = slots * len(SLOT_FIELDS) + free
        self.sizes = [len(v) for _, v in SLOT_FIELDS]
        self.trunk = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.1))
        self.heads = nn.Linear(hidden, slots * (1 + sum(self.sizes)))
        for name, _ in SLOT_FIELDS:
            self.register_buffer(f"words_{name}", words[name].float())
        self.register_buffer("words_none", words[NONE_WORD].float())
        # learned vectors after the slots, started at the LM's typical token norm
        self.free_tokens = nn.Parameter(torch.randn(free, lm_hidden) * (target_norm / lm_hidden ** 0.5))

    def logits(self, z: torch.Tensor) -> list[torch.Tensor]:
        """[(B, slots) presence, then (B, slots, n_values) per field]."""
        h = self.heads(self.trunk(z)).view(z.shape[0], self.slots, -1)  # (B, S, 1 + sum(sizes))
        return [h[..., 0], *torch.split(h[..., 1:], self.sizes, dim=-1)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, dim) -> (B, k, H): per slot the mixed words of size, colour, shape, row, column."""
        pres, *fields = self.logits(z)
        p = torch.sigmoid(pres)[..., None, None]  # (B, S, 1, 1)
        toks = torch.stack([f.softmax(-1) @ getattr(self, f"words_{name}")
                            for f, (name, _) in zip(fields, SLOT_FIELDS)], dim=2)  # (B, S, n_fields, H)
        toks = p * toks + (1 - p) * self.words_none  # absent slot -> " none"
        prefix = toks.reshape(z.shape[0], -1, self.lm_hidden)  # (B, S * n_fields, H)
        return torch.cat([prefix, self.free_tokens.expand(z.shape[0], -1, -1)], dim=1)

    def aux_loss(self, z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of presence and (where an object is) every field against `slot_targets`."""
        pres, *fields = self.logits(z)
        loss = F.binary_cross_entropy_with_logits(pres, targets[..., 0].float())
        there = targets[..., 0] == 1  # (B, S)
        if bool(there.any()):
            for f, lg in enumerate(fields):
                loss = loss + F.cross_entropy(lg[there], targets[..., 1 + f][there])
        return loss

    @torch.no_grad()
    def accuracy(self, z: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Presence accuracy over slots, and per field accuracy over present objects."""
        pres, *fields = self.logits(z)
        out = {"present": float(((pres > 0).long() == targets[..., 0]).float().mean())}
        there = targets[..., 0] == 1
        for f, ((name, _), lg) in enumerate(zip(SLOT_FIELDS, fields)):
            out[name] = float((lg.argmax(-1)[there] == targets[..., 1 + f][there]).float().mean())
        return out


def fit_slot_heads(proj: SlotProjector, z_tr: np.ndarray, t_tr: np.ndarray, z_va: np.ndarray, t_va: np.ndarray,
                   epochs: int, lr: float = 1e-3, batch_size: int = 128, seed: int = 0) -> dict[str, float]:
    """Train the attribute heads alone (no LM: seconds on a CPU); keep the epoch with the lowest
    validation loss. Returns that epoch's validation accuracies (and the epoch)."""
    g = torch.Generator().manual_seed(seed)
    ztr, ttr = torch.from_numpy(np.asarray(z_tr, np.float32)), torch.from_numpy(t_tr)
    zva, tva = torch.from_numpy(np.asarray(z_va, np.float32)), torch.from_numpy(t_va)
    params = list(proj.trunk.parameters()) + list(proj.heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    best, best_state, best_epoch = float("inf"), None, 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs cost more than they save (badly so on a loaded CPU)
    try:
        best, best_state, best_epoch = _fit(proj, opt, ztr, ttr, zva, tva, epochs, batch_size, g)
    finally:
        torch.set_num_threads(threads)
    if best_state is not None:
        proj.load_state_dict(best_state)
    proj.eval()
    return {**proj.accuracy(zva, tva), "val_loss": best, "epoch": float(best_epoch)}


def _fit(proj: SlotProjector, opt: torch.optim.Optimizer, ztr: torch.Tensor, ttr: torch.Tensor, zva: torch.Tensor,
         tva: torch.Tensor, epochs: int, batch_size: int, g: torch.Generator
         ) -> tuple[float, dict[str, torch.Tensor] | None, int]:
    best, best_state, best_epoch = float("inf"), None, 0
    for ep in range(epochs):
        proj.train()
        for idx in torch.randperm(len(ztr), generator=g).split(batch_size):
            opt.zero_grad()
            proj.aux_loss(ztr[idx], ttr[idx]).backward()
            opt.step()
        proj.eval()
        with torch.no_grad():
            v = float(proj.aux_loss(zva, tva))
        if v < best:
            best, best_epoch = v, ep + 1
            best_state = {k: t.detach().clone() for k, t in proj.state_dict().items()}
    return best, best_state, best_epoch
