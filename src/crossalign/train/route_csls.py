"""Routing with the hubness correction in view: score each route candidate as it will be served.

`train.hubness: auto` corrects a pair after routing has chosen it, so a route chosen on plain cosine
may lose to one that validation would have preferred once corrected: on emoji, text<->text_zh went to
kernel CCA (val 0.680 plain, 0.706 corrected), while corrected mixtures of CCA, Procrustes and kernel
CCA score higher on validation and are 0.010 ahead of it on test (README). With `HubScorer`, routing scores every candidate and mixture by its
best (k, w) of evaluate/csls.py's grid (or "off"), with banks of the same seeded sample of training
items the hubness stage will use (train/hubness.py `bank_sample`), cut and rounded to float16 as that
stage stores them, so the route chosen here is corrected there as it was scored. The test split is
never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crossalign.align.model import AlignmentModel
from crossalign.data.features import FeatureTable
from crossalign.evaluate.csls import OFF, choose_pair_margin
from crossalign.train.hubness import bank_extra, bank_rows, bank_sample, sample_banks

__all__ = ["HubScorer"]


class HubScorer:
    """Banks of every route candidate's training items (lazily, per candidate and view) and the
    CSLS-aware score of a candidate or mixture on validation."""

    def __init__(self, model: AlignmentModel, tr: FeatureTable, va: FeatureTable,
                 extra: Mapping[str, np.ndarray] | None, seed: int):
        self.tr, self.groups = tr, va.groups()
        self.ext = bank_extra(model, extra)
        self.sample = bank_sample(len(tr), {c: len(x) for c, x in self.ext.items()}, model.columns, seed)
        self.model, self.extra, self.seed = model, extra, seed  # for the joint space's bank, when needed
        self._joint: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # {view: (joint vectors, rank)}
        self._cache: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}
        # ASIF: a view's cosines to its anchors are the same in every pair it sits in (only k, p differ)
        self._asif_sims: dict[tuple[str, int, int], np.ndarray] = {}

    def _items(self, c: str, keep: np.ndarray) -> np.ndarray:
        """Features of view c's sampled items where `keep`, in item order (train rows, then unpaired)."""
        sel = self.sample[c][0][keep]
        n = len(self.tr)
        x = np.asarray(self.tr.features[c])[sel[sel < n]]
        return np.concatenate([x, self.ext[c][sel[sel >= n] - n]]) if c in self.ext else x

    @torch.no_grad()
    def _bank(self, key: str, m: str, fitted: dict[str, Any], c: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (n, width), rank (n,)) of view c's first bank_rows(width) sampled items in candidate m."""
        if (key, m, c) not in self._cache:
            rank = self.sample[c][1]
            keep = rank < bank_rows(width)
            route, mods = fitted[m]
            if route["method"] == "joint":
                if self._joint is None:  # the same sample in the joint space (embedded once, when first needed)
                    self._joint = sample_banks(self.model, self.tr, self.extra, self.seed)
                z = self._joint[c][0][keep]
            elif route["method"] == "asif":
                sk = (c, int(keep.sum()), id(mods[c].anchors))
                if sk not in self._asif_sims:
                    self._asif_sims[sk] = mods[c].sims(self._items(c, keep))
                z = mods[c].relative(self._asif_sims[sk])
            else:  # a closed form's LinearPath, as routing scores its validation vectors
                x = torch.from_numpy(self._items(c, keep))
                z = torch.cat([F.normalize(mods[c](x[i:i + 1024]), dim=-1) for i in range(0, len(x), 1024)]).numpy()
            self._cache[(key, m, c)] = (np.asarray(z, np.float32), rank[keep])
        return self._cache[(key, m, c)]

    def score(self, a: str, b: str, parts: list[tuple[str, float]], vals: dict[str, dict[str, np.ndarray]],
              fitted: dict[str, Any]) -> dict[str, Any]:
        """{"R@1", "MRR", "margin", "csls", "off"}: the best CSLS choice (or "off") of a single candidate
        ([(m, 1.0)]) or a mixture's parts on validation, each averaged over both directions."""
        key = f"{a}|{b}"
        width = sum(vals[m][a].shape[1] for m, _ in parts)
        n = bank_rows(width)
        z, banks = {}, {}
        for c in (a, b):
            z[c] = np.concatenate([vals[m][c] * np.sqrt(w) for m, w in parts], 1)  # unit rows, as routes.py
            cut = []
            for m, w in parts:
                bank, rank = self._bank(key, m, fitted, c, vals[m][c].shape[1])
                cut.append(bank[rank < n] * np.sqrt(w))  # the mixture's items: a subset of each part's
            banks[c] = np.concatenate(cut, 1).astype(np.float16).astype(np.float32)  # as the run stores them
        win, scores, margin = choose_pair_margin(z[a], z[b], banks[a], banks[b], self.groups)
        return {"R@1": scores[win][0], "MRR": scores[win][1], "margin": margin, "csls": win, "off": scores[OFF][0]}
