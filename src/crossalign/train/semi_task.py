"""`SemiAlignmentTask`: the alignment task plus unpaired items, for the same Trainer and run folder.

An epoch's index space is [0, P) for the P paired training rows and [P, P + U) for the U unpaired
items. Each step's paired rows go through the plain `AlignmentTask` (topped up to the batch size
from the other paired rows when the batch holds few), and its unpaired items add
  - `pseudo-pairs`: soft contrastive terms towards their OT pseudo-targets (`ot.pseudo_targets`),
    weighted by confidence;
  - `self-training`: InfoNCE over confident mutual-nearest-neighbour pseudo-pairs;
  - `unimodal > 0`: the neighbourhood regulariser (`losses.neighbourhood`).
Targets and pseudo-pairs are refreshed every `refresh` epochs (Trainer hook `on_epoch_start`) and
saved beside each checkpoint (`<name>.semi.safetensors`) so a resumed run continues with them.
With no unpaired items it is exactly `AlignmentTask`; with method none and no regulariser it trains on
the pairs alone for the same number of steps as the other methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from crossalign.align.distributed import SINGLE, DistContext
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable
from crossalign.semi.config import SemiConfig
from crossalign.semi.data import Unpaired
from crossalign.semi.losses import neighbourhood, soft_contrastive
from crossalign.semi.ot import pseudo_targets
from crossalign.semi.selftrain import choose_threshold, mutual_nn
from crossalign.train.align_task import AlignmentTask, embed_table

__all__ = ["SemiAlignmentTask"]

_CHUNK = 4096  # unpaired items per Sinkhorn problem (bounds the (U, P) cost matrix)


class SemiAlignmentTask:
    greater_is_better = True

    def __init__(self, model: AlignmentModel, cfg: RunConfig, train: FeatureTable, val: FeatureTable,
                 dist: DistContext = SINGLE, *, unpaired: Unpaired, semi: SemiConfig, fit_inputs: bool = True):
        tuned = [c for c in cfg.model.train_towers if c in model.towers and not model.specs[c].caches_inputs]
        if tuned and unpaired.total():
            raise ValueError(f"unpaired items need cached features; fine-tuned pretrained towers {tuned} are not supported")
        self.base = AlignmentTask(model, cfg, train, val, dist)
        self.model, self.cfg, self.dist, self.semi = model, cfg, dist, semi
        self.primary = self.base.primary
        self.P = len(train)
        self.cols = [c for c in model.columns if len(unpaired.features.get(c, ()))]
        self.ufeats = {c: torch.from_numpy(np.ascontiguousarray(unpaired.features[c])) for c in self.cols}
        n = [len(self.ufeats[c]) for c in self.cols]
        self.ucol = torch.cat([torch.full((k,), i) for i, k in enumerate(n)]) if n else torch.zeros(0, dtype=torch.long)
        self.uj = torch.cat([torch.arange(k) for k in n]) if n else torch.zeros(0, dtype=torch.long)
        self.U = int(sum(n))
        # With unpaired items an epoch spans P + U indices whatever the method, so `none` trains on the
        # pairs for as many steps as the semi-supervised methods do (a fair pairs-only baseline).
        self.active = self.U > 0
        self.uses_unpaired = self.active and (semi.method != "none" or semi.unimodal > 0)
        # Input statistics may use every item of a view, paired or not. `train_semi` fits them before the
        # closed form (fit_inputs=False here): refitting after it would move the inputs under the fitted map.
        if self.uses_unpaired and fit_inputs:
            model.fit_normalizers({c: torch.cat([self.base.feats[c], self.ufeats.get(c, self.base.feats[c][:0])])
                                   for c in model.columns if c not in model.towers})
        self.state: dict[str, torch.Tensor] = {}
        self.refreshed_at = -1

    # -- Task protocol ---------------------------------------------------------------------------
    def num_train(self) -> int:
        return self.P + (self.U if self.active else 0)

    def param_groups(self) -> list[dict[str, Any]]:
        return self.base.param_groups()

    def validate(self) -> dict[str, float]:
        return self.base.validate()

    def on_epoch_start(self, epoch: int) -> None:
        s = self.semi
        if not self.active or s.method == "none" or epoch < s.start:
            return
        if self.refreshed_at < 0 or epoch - self.refreshed_at >= s.refresh:
            self.refresh()
            self.refreshed_at = epoch

    def training_forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        if not self.active:
            return self.base.training_forward(idx)
        pidx, uid = idx[idx < self.P], idx[idx >= self.P] - self.P
        want = min(len(idx), self.P)
        if len(pidx) < want:  # few pairs in this batch: top up from the other pairs, seeded by the batch
            g = torch.Generator().manual_seed(int(idx[0]) * 1_000_003 + len(idx) + self.cfg.train.seed)
            rest = torch.ones(self.P, dtype=torch.bool)
            rest[pidx] = False
            extra = torch.nonzero(rest).flatten()
            pidx = torch.cat([pidx, extra[torch.randperm(len(extra), generator=g)[:want - len(pidx)]]])
        losses, report = self.base.training_forward(pidx)
        if not self.uses_unpaired:
            return losses, report
        unp, reg, used = self._unpaired_terms(uid)
        if used:
            s = self.semi
            total = losses["loss"] + s.weight * unp + s.unimodal * reg
            losses = {**losses, "loss": total, "loss/unpaired": unp.detach(), "loss/unimodal": reg.detach()}
        return losses, report

    def save(self, folder: Path, name: str) -> None:
        self.base.save(folder, name)
        if self.state:
            st = {**self.state, "refreshed_at": torch.tensor(self.refreshed_at)}
            tmp = folder / f".{name}.semi.safetensors.tmp"
            save_file({k: v.contiguous() for k, v in st.items()}, str(tmp))
            tmp.replace(folder / f"{name}.semi.safetensors")

    def load(self, folder: Path, name: str) -> None:
        self.base.load(folder, name)
        f = folder / f"{name}.semi.safetensors"
        if f.exists():
            st = load_file(str(f))
            self.refreshed_at = int(st.pop("refreshed_at"))
            self.state = st

    # -- unpaired terms --------------------------------------------------------------------------
    def _partners(self, col: str) -> list[tuple[str, float]]:
        return [(b if a == col else a, w) for a, b, w in self.base.pairs if col in (a, b)]

    def _unpaired_terms(self, uid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        zero = self.model.logit_scale.new_zeros(())
        unp, reg, used, nterms = zero, zero, False, 0
        for k, c in enumerate(self.cols):
            j = self.uj[uid[self.ucol[uid] == k]]
            if len(j) == 0:
                continue
            x = self.ufeats[c][j]
            z = self.model.embed(c, x)  # (B_c, dim)
            if self.semi.method == "pseudo-pairs" and f"pp/{c}/idx" in self.state:
                unp, used, nterms = unp + self._pseudo_term(c, j, z), True, nterms + 1
            elif self.semi.method == "self-training":
                t = self._selftrain_term(c, j, z)
                if t is not None:
                    unp, used, nterms = unp + t, True, nterms + 1
            if self.semi.unimodal > 0:
                reg, used = reg + neighbourhood(self._standardised(c, x), z, torch.ones(len(j))), True
        return unp / max(nterms, 1), reg / max(len(self.cols), 1), used

    def _standardised(self, c: str, x: torch.Tensor) -> torch.Tensor:
        head = self.model.heads[c]
        return head.norm(x.float()) if c not in self.model.towers else x.float()

    def _pseudo_term(self, c: str, j: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        idx, w, conf = self.state[f"pp/{c}/idx"][j], self.state[f"pp/{c}/w"][j], self.state[f"pp/{c}/conf"][j]
        cand = torch.unique(idx)
        if len(cand) > self.semi.max_candidates:  # keep the paired rows carrying the most target mass
            mass = torch.zeros(self.P).index_add_(0, idx.flatten(), w.flatten())
            cand = torch.sort(torch.topk(mass, self.semi.max_candidates).indices).values
        pos = torch.full((self.P,), -1, dtype=torch.long)
        pos[cand] = torch.arange(len(cand))
        p = pos[idx]  # (B, k) column of each target among the candidates, -1 when dropped
        targets = torch.zeros(len(j), len(cand))
        targets.scatter_add_(1, p.clamp(min=0), torch.where(p >= 0, w, torch.zeros_like(w)))
        mass = targets.sum(1, keepdim=True)
        targets = targets / mass.clamp(min=1e-12)
        conf = torch.where(mass[:, 0] > 0, conf, torch.zeros_like(conf))
        term, wsum = z.new_zeros(()), 0.0
        for b, pw in self._partners(c):
            zc = self.model.embed(b, self.base.feats[b][cand])  # (C, dim) partners of the paired rows
            term = term + pw * soft_contrastive(z, zc, targets, conf, self.model.scale())
            wsum += pw
        return term / max(wsum, 1e-12)

    def _selftrain_term(self, c: str, j: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        terms, wsum = [], 0.0
        for b, pw in self._partners(c):
            key = f"st/{c}/{b}"
            if key not in self.state or b not in self.ufeats:
                continue
            partner = self.state[key][j]
            keep = partner >= 0
            if int(keep.sum()) < 2:
                continue
            zb = self.model.embed(b, self.ufeats[b][partner[keep]])  # (n, dim)
            eye = torch.eye(len(zb))
            ones = torch.ones(len(zb))
            scale = self.model.scale()
            terms.append(pw * (soft_contrastive(z[keep], zb, eye, ones, scale)
                               + soft_contrastive(zb, z[keep], eye, ones, scale)) / 2)
            wsum += pw
        return sum(terms) / wsum if terms else None

    # -- refresh -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _embed_all(self, c: str, x: torch.Tensor, bs: int = 1024) -> np.ndarray:
        was = self.model.training
        self.model.eval()
        out = np.concatenate([self.model.embed(c, x[s:s + bs]).float().numpy() for s in range(0, len(x), bs)])
        self.model.train(was)
        return out

    @torch.no_grad()  # not inference_mode: the targets are used by training steps later
    def refresh(self) -> None:
        s = self.semi
        state: dict[str, torch.Tensor] = {}
        if s.method == "pseudo-pairs":
            for c in self.cols:
                if s.space == "head":
                    xu, xp = self._embed_all(c, self.ufeats[c]), self._embed_all(c, self.base.feats[c])
                else:
                    xu = self._standardised(c, self.ufeats[c]).flatten(1).numpy()
                    xp = self._standardised(c, self.base.feats[c]).flatten(1).numpy()
                idx, w, conf = [], [], []
                for a in range(0, len(xu), _CHUNK):
                    pt = pseudo_targets(xu[a:a + _CHUNK], xp, reg=s.ot_reg, balance=s.ot_balance)
                    i, ww = pt.top(s.top_k)
                    idx.append(i)
                    w.append(ww)
                    conf.append(pt.confidence)
                state[f"pp/{c}/idx"] = torch.from_numpy(np.concatenate(idx).astype(np.int64))
                state[f"pp/{c}/w"] = torch.from_numpy(np.concatenate(w).astype(np.float32))
                state[f"pp/{c}/conf"] = torch.from_numpy(np.concatenate(conf).astype(np.float32))
        elif s.method == "self-training":
            val = embed_table(self.model, self.base.val)
            groups = self.base.val.groups()
            emb = {c: self._embed_all(c, self.ufeats[c]) for c in self.cols}
            for a, b, _ in self.base.pairs:
                if a not in emb or b not in emb:
                    continue
                t = choose_threshold(val[a], val[b], groups, s.precision)
                ia, ib, sim = mutual_nn(emb[a], emb[b])
                ok = sim >= t
                pa = torch.full((len(emb[a]),), -1, dtype=torch.long)
                pb = torch.full((len(emb[b]),), -1, dtype=torch.long)
                pa[torch.from_numpy(ia[ok])] = torch.from_numpy(ib[ok])
                pb[torch.from_numpy(ib[ok])] = torch.from_numpy(ia[ok])
                state[f"st/{a}/{b}"], state[f"st/{b}/{a}"] = pa, pb
                state[f"st_threshold/{a}/{b}"] = torch.tensor(t)
        self.state = state
