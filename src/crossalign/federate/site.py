"""One site of a federation: its rows, its own feature cache, its model, local training.

Local training is the ordinary `AlignmentTask` + `Trainer` (one call per round, `local_epochs`
epochs); FedProx adds mu/2 * ||w - w_global||^2 over the weights that came from the server.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossalign.align.io import build_towers
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.data.features import FeatureTable, build_view_encoder, encode_views
from crossalign.data.manifest import load_manifest
from crossalign.evaluate.evaluators import RetrievalEvaluator
from crossalign.federate.closed_form import site_stage
from crossalign.federate.config import FederationConfig, parse_partition
from crossalign.federate.params import exchanged_keys, load_exchanged
from crossalign.federate.partition import partition_rows, site_manifest
from crossalign.federate.routing import site_route_scores
from crossalign.paths import cache_root
from crossalign.train.align_task import AlignmentTask, embed_table
from crossalign.train.trainer import Trainer

__all__ = ["Site", "round_lr", "round_seed", "site_run_config"]


def site_run_config(fed: FederationConfig, site: int) -> RunConfig:
    """The global run config restricted to the views this site holds."""
    cfg = copy.deepcopy(fed.run)
    keep = set(fed.views_of(site))
    cfg.model.views = [v for v in cfg.model.views if v.column in keep]
    if cfg.model.anchor is not None and cfg.model.anchor not in keep:
        cfg.model.anchor = None
    cfg.model.pair_weights = dict(cfg.model.pair_weights)
    cfg.model.tower_tuning = {c: t for c, t in cfg.model.tower_tuning.items() if c in keep}
    cfg.model.train_towers = [c for c in cfg.model.train_towers if c in keep]
    cfg.model.__post_init__()
    return cfg


def round_seed(base: int, rnd: int, site: int) -> int:
    """Round 1 at site 0 uses the run's own seed (so one site, one round = centralised training)."""
    return base + 7919 * (rnd - 1) + 104729 * site


def round_lr(fed: FederationConfig, rnd: int) -> float:
    """Cosine decay of the local peak learning rate over rounds (each round's Trainer then warms up
    and decays within its own epochs, as one centralised epoch would)."""
    import math

    return fed.run.train.lr * 0.5 * (1 + math.cos(math.pi * (rnd - 1) / max(fed.rounds, 1)))


class _ProxTask(AlignmentTask):
    """AlignmentTask plus the FedProx proximal term (Li et al. 2020, eq. 2) when mu > 0."""

    def __init__(self, *a: Any, mu: float = 0.0, **kw: Any):
        super().__init__(*a, **kw)
        self.mu = mu
        self.anchor = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def training_forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        losses, report = super().training_forward(idx)
        if self.mu > 0:
            prox = sum(((p - self.anchor[n]) ** 2).sum() for n, p in self.model.named_parameters() if n in self.anchor)
            losses = {**losses, "loss": losses["loss"] + 0.5 * self.mu * prox, "prox": prox.detach()}
        return losses, report


class Site:
    def __init__(self, fed: FederationConfig, site: int, data: str | None = None, cache: str | None = None):
        self.fed, self.site = fed, site
        self.cfg = site_run_config(fed, site)
        t = self.cfg.train
        from crossalign.recipes.align import ensure_splits

        m = ensure_splits(load_manifest(data or t.data), t.seed)
        if data is None:  # simulated site: its share of the common manifest
            kind, arg = parse_partition(fed.partition)
            m = site_manifest(m, partition_rows(m, kind, arg, fed.sites, t.seed, fed.partition_key)[site])
        self.manifest = m
        cache_dir = Path(cache or fed.site_cache.format(cache=cache_root(), site=site))
        encoders = {v.column: build_view_encoder(v, m) for v in self.cfg.model.views}
        self.table: FeatureTable = encode_views(m, self.cfg.model.views, encoders=encoders,
                                                batch_size=t.encode_batch_size, cache_dir=cache_dir)
        self.train_table, self.val_table = self.table.split(t.train_split), self.table.split(t.val_split)
        self.specs = {c: e.spec for c, e in encoders.items()}
        torch.manual_seed(t.seed)
        self.model = AlignmentModel(self.cfg.model, self.specs, build_towers(self.cfg, self.specs))
        self.keys = exchanged_keys(self.model)
        self._trainable = {n: p.requires_grad for n, p in self.model.named_parameters()}

    # -- statistics round -------------------------------------------------------------------
    def feature_stats(self) -> dict[str, np.ndarray]:
        """Per-feature mean and std (computed exactly as `Standardize.fit` does) and the count of
        the training features of each frozen view (and of each linear path's input): what the server
        pools into one standardisation."""
        out = {}
        for c in self.cfg.model.columns:
            if c in self.model.towers and c not in self.model.linear:  # a from-scratch tower's linear path reads its input
                continue
            x = torch.from_numpy(np.asarray(self.train_table.features[c])).float()
            n = len(x)
            out[f"{c}/mean"] = x.mean(0).numpy() if n else np.zeros(x.shape[1:], np.float32)
            out[f"{c}/std"] = x.std(0).numpy() if n > 1 else np.zeros(x.shape[1:], np.float32)
            out[f"{c}/count"] = np.array([n], np.float64)
        return out

    def closed_form_stage(self, stage: str, arrays: dict[str, np.ndarray], views: list[str] | None = None
                          ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """One stage of the federated closed-form start (federate/closed_form.py) over the site's views
        among `views` (the ones the closed form fits; None: all)."""
        load_exchanged(self.model, {k: v for k, v in arrays.items() if k.startswith("linear.")})
        cols = [c for c in self.cfg.model.columns if views is None or c in views]
        return site_stage(stage, self.model, self.train_table, self.val_table, cols, arrays)

    def route_stage(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        """Per-pair routing (federate/routing.py): the best global model and the pairs' CCA candidates
        scored on this site's validation rows (scalars)."""
        load_exchanged(self.model, arrays)
        return site_route_scores(self.model, self.val_table, self.train_table, arrays)

    def pair_stage(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        """`start: auto` per pair (federate/members.py): this federation's model scored on each pair of
        the site's views, on its validation rows (scalars)."""
        from crossalign.federate.members import site_pair_scores

        load_exchanged(self.model, arrays)
        return site_pair_scores(self.model, self.val_table, self.train_table)

    def freeze(self, views: list[str]) -> None:
        """Hybrid start: the closed-form views' linear paths and heads stop training this round (as
        `freeze_closed_form` does centrally) and stop travelling; [] makes everything trainable again."""
        for n, p in self.model.named_parameters():
            p.requires_grad_(self._trainable[n])
        for c in set(views) & set(self.cfg.model.columns):
            for p in list(self.model.linear[c].parameters()) + list(self.model.heads[c].parameters()):
                p.requires_grad_(False)
        self.keys = exchanged_keys(self.model)

    # -- one round ---------------------------------------------------------------------------
    def train(self, arrays: dict[str, np.ndarray], rnd: int, mu: float = 0.0, frozen: list[str] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """One round of local training from the global `arrays`; `frozen`: views held at the closed form."""
        if len(self.train_table) < 2 or len(self.val_table) < 2:
            raise ValueError(f"site {self.site}: needs train and val rows, has {len(self.train_table)} train, "
                             f"{len(self.val_table)} val")
        load_exchanged(self.model, arrays)
        self.freeze(frozen or [])
        t = self.cfg.train
        task = _ProxTask(self.model, self.cfg, self.train_table, self.val_table, mu=mu)
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix=f"crossalign-site{self.site}-") as work:
            # the run's loop settings; the round decides epochs, lr and seed; no early stop inside a round
            trainer = Trainer(task, work, **t.trainer_kwargs(len(self.train_table), epochs=self.fed.local_epochs,
                                                             lr=round_lr(self.fed, rnd),
                                                             seed=round_seed(t.seed, rnd, self.site), patience=0,
                                                             progress=False))
            res = trainer.fit(resume=False)
        last = res.history[-1]
        state = self.model.state_dict()
        out = {k: state[k].detach().cpu().numpy().copy() for k in self.keys}
        return out, {"num-examples": float(len(self.train_table)), "train-loss": float(last.get("train/loss", np.nan)),
                     "local-val-R@1": float(last.get(f"val/{t.primary}", np.nan)), "seconds": time.time() - t0}

    def evaluate(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        load_exchanged(self.model, arrays)
        emb = embed_table(self.model, self.val_table)
        m = RetrievalEvaluator(self.val_table.groups())(emb)
        return {"num-examples": float(len(self.val_table)), "val-R@1": float(m.get("mean/R@1", np.nan))}


_SITES: dict[tuple[str, int, str | None, str | None], Site] = {}


def get_site(fed_json: str, site: int, data: str | None, cache: str | None) -> Site:
    """One Site per process and federation (Flower reuses a worker across rounds)."""
    key = (fed_json, site, data, cache)
    if key not in _SITES:
        import json

        from crossalign.federate.config import FederationConfig

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        _SITES.clear()
        _SITES[key] = Site(FederationConfig.from_dict(json.loads(fed_json)), site, data, cache)
    return _SITES[key]
