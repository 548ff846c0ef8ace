"""`train.hubness: auto`: after routing, correct hubness (CSLS, align/hubness.py) on the pairs of views
where the validation split says it pays (the choice itself: evaluate/csls.py, which the baselines use too).

Per pair (a, b), candidates are "off" and every (k, w) of evaluate/csls.py's grid: the validation score matrix
s(x, y) - w (r_a(y) + r_b(x)), with r the mean similarity to the k nearest items of the other view's
bank (its training items, paired and unpaired, in the model's space). Each is scored by R@1 averaged
over a -> b and b -> a, then MRR; a candidate replaces "off" only when strictly better, so a pair that
validation cannot separate stays uncorrected. The test split is never read. Measured on `scenes` with
10 % of the rows paired: +0.011 to +0.018 test mean R@1 over three seeds (README).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from crossalign.align.embed import embed_table, tuned_columns
from crossalign.align.io import build_towers
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable
from crossalign.evaluate.csls import MAX_BANK, choose_pair, parse

__all__ = ["HubChoice", "bank_extra", "bank_rows", "bank_sample", "choose_hubness", "hub_model", "pair_banks",
           "sample_banks", "unhubbed"]

log = logging.getLogger(__name__)
# values per bank (float16: 8 MiB): a wide block (a routed pair's mixture, ~2 400 wide on emoji) keeps
# fewer items, never under MIN_BANK. Emoji's 1 458 items fit whole: a cap at a quarter of this cost
# 0.005 test mean R@1 there (fewer items, noisier neighbourhoods), this one nothing (README)
MAX_FLOATS, MIN_BANK = 1 << 22, 256


class HubChoice:
    """`hubness` (for `model.hubness`, empty when no pair gains), `banks` ({"a|b": {view: (n, w)}}: each
    corrected pair's two banks within its block) and `report`."""

    def __init__(self) -> None:
        self.hubness: dict[str, Any] = {}
        self.banks: dict[str, dict[str, torch.Tensor]] = {}
        self.report: dict[str, Any] = {}


def bank_sample(n_rows: int, n_extra: Mapping[str, int], columns: list[str], seed: int
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{view: (items, rank)}: a seeded sample of at most MAX_BANK of the view's training items (index < n_rows:
    a paired train row; beyond: its unpaired item index - n_rows), in item order; `rank` is each item's
    place in the sample's random order, so the first m by rank are themselves a seeded sample. Routing
    (train/routing.py) draws the same sample, so what it scores is what this stage corrects with."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in columns:
        n = n_rows + n_extra.get(c, 0)
        pick = rng.permutation(n)[:MAX_BANK]
        rank = np.empty(n, np.int64)
        rank[pick] = np.arange(len(pick))
        sel = np.sort(pick)
        out[c] = (sel, rank[sel])
    return out


def bank_extra(model: AlignmentModel, extra: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The unpaired items that join each view's bank: none for a fine-tuned tower (it reads raw items,
    unpaired ones are features)."""
    skip = set(tuned_columns(model))
    return {c: np.asarray(extra[c]) for c in model.columns if extra is not None and c in extra and c not in skip}


@torch.inference_mode()
def sample_banks(model: AlignmentModel, tr: FeatureTable, extra: Mapping[str, np.ndarray] | None,
                 seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{view: (bank (n, dim), rank (n,))}: `bank_sample`'s items in the model's space. Only the sampled
    items are embedded (a routed vector can be many thousands wide)."""
    ext = bank_extra(model, extra)
    out = {}
    for c, (sel, rank) in bank_sample(len(tr), {c: len(x) for c, x in ext.items()}, model.columns, seed).items():
        mask = np.zeros(len(tr), bool)
        mask[sel[sel < len(tr)]] = True
        parts = [embed_table(model, tr.subset(mask), columns=[c])[c]]
        if c in ext:
            x = torch.from_numpy(ext[c][sel[sel >= len(tr)] - len(tr)])
            parts += [model.embed(c, x[i:i + 1024]).float().numpy() for i in range(0, len(x), 1024)]
        out[c] = (np.concatenate(parts).astype(np.float32), rank)
    return out


def bank_rows(width: int) -> int:
    """How many items (the first by rank) a bank `width` wide keeps: MAX_FLOATS values, at least MIN_BANK."""
    return max(MIN_BANK, MAX_FLOATS // max(1, width))


def pair_banks(model: AlignmentModel, banks: Mapping[str, tuple[np.ndarray, np.ndarray]],
               keys: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """{"a|b": {view: (n, w)}}: each pair's two banks cut to its block (the whole vector when unrouted),
    as many items as MAX_FLOATS allows (at least MIN_BANK), the first by sample rank, rounded to float16
    (as the run stores them, so what validation scores is what the run serves)."""
    blocks = model.router.blocks if model.router is not None else {}
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in keys:
        s0, s1 = blocks.get(key, (0, model.out_dim))
        out[key] = {}
        for c in key.split("|"):
            z, rank = banks[c]
            keep = rank < bank_rows(s1 - s0)  # ranks are 0..n-1: the first by rank, in item order
            out[key][c] = np.ascontiguousarray(z[keep, s0:s1]).astype(np.float16)
    return out


def choose_hubness(model: AlignmentModel, tr: FeatureTable, va: FeatureTable,
                   extra: Mapping[str, np.ndarray] | None = None, seed: int = 0) -> HubChoice:
    """Per pair of `model`'s views (a model without a correction, in eval mode), "off" or the best (k, w)
    on validation; see the module docstring. `extra`: unpaired items per view, added to the banks."""
    out = HubChoice()
    if model.hub is not None:
        raise ValueError("choose_hubness needs the model without its hubness correction (see unhubbed)")
    cols = model.columns
    keys = [f"{a}|{b}" for i, a in enumerate(cols) for b in cols[i + 1:]]
    banks = pair_banks(model, sample_banks(model, tr, extra, seed), keys)
    blocks = model.router.blocks if model.router is not None else {}
    zv, groups = embed_table(model, va), va.groups()
    pairs: dict[str, dict[str, Any]] = {}
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            key = f"{a}|{b}"
            s0, s1 = blocks.get(key, (0, model.out_dim))
            win, scores = choose_pair(zv[a][:, s0:s1], zv[b][:, s0:s1], banks[key][a].astype(np.float32),
                                      banks[key][b].astype(np.float32), groups)
            out.report[key] = {"chosen": win, "val_R@1": {m: v[0] for m, v in scores.items()},
                               "gain": scores[win][0] - scores["off"][0]}
            if win != "off":
                k_, w_ = parse(win)
                pairs[key] = {"k": k_, "weight": w_}
            log.info("hubness %s: %s (val R@1 %.3f, off %.3f)", key, win, scores[win][0], scores["off"][0])
    if pairs:
        out.hubness = {"pairs": pairs, "bank": {key: {c: len(z) for c, z in banks[key].items()} for key in pairs}}
        out.banks = {key: {c: torch.from_numpy(z) for c, z in banks[key].items()} for key in pairs}
    return out


def unhubbed(model: AlignmentModel, cfg: RunConfig) -> tuple[AlignmentModel, RunConfig]:
    """The model without its hubness correction (itself when it has none): what a resumed run re-chooses from."""
    if model.hub is None:
        return model, cfg
    c = copy.deepcopy(cfg)
    c.model.hubness = {}
    plain = AlignmentModel(c.model, model.specs, build_towers(c, model.specs))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("hub.")}, strict=True)
    return plain.eval(), c


def hub_model(model: AlignmentModel, cfg: RunConfig, choice: HubChoice) -> tuple[AlignmentModel, RunConfig]:
    """`model` with `choice`'s correction (weights copied strictly, banks filled)."""
    c = copy.deepcopy(cfg)
    c.model.hubness = choice.hubness
    hubbed = AlignmentModel(c.model, model.specs, build_towers(c, model.specs))
    banks = {f"hub.banks.{key}.{v}.z": t for key, sides in choice.banks.items() for v, t in sides.items()}
    hubbed.load_state_dict(model.state_dict() | banks, strict=True)
    return hubbed.eval(), c
