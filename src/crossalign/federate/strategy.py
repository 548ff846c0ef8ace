"""Flower strategies, wrapped so each parameter is averaged over the sites that trained it.

`SiteAwareStrategy` sits around a Flower strategy (FedAvg, FedProx, FedAdam, FedYogi, optionally
inside Flower's `DifferentialPrivacyServerSideFixedClipping`). It counts failures and bytes, keeps
the per-site record, and:
- without DP: averages each array over the sites that sent it, then hands that one average to
  the Flower strategy as a single reply (weight 1), so FedAvg/FedProx return it unchanged and
  FedAdam/FedYogi take their server step from it;
- with DP: gives every site's update over all arrays (zero where it did not train) to Flower's
  clipping + noise wrapper, which needs equal weights and the fixed sample size; arrays nobody
  trained are reset afterwards (post-processing of public facts, no privacy cost).
"""

from __future__ import annotations

import collections
import copy
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedYogi,
    Strategy,
)

from crossalign.federate.config import FederationConfig
from crossalign.federate.params import (
    aggregate_per_parameter,
    from_record,
    is_statistic,
    record_bytes,
    to_record_np,
)
from crossalign.federate.privacy import epsilon_for, gdp_mu
from crossalign.federate.record import FederationRecord, RoundFailed

__all__ = ["STRATEGY_FACTORIES", "SiteAwareStrategy", "build_strategy"]

log = logging.getLogger(__name__)


def _common(fed: FederationConfig) -> dict[str, Any]:
    n = fed.sampled_per_round()
    return {"fraction_train": fed.fraction_fit, "min_train_nodes": n, "fraction_evaluate": 1.0,
            "min_evaluate_nodes": fed.sites, "min_available_nodes": fed.sites}


STRATEGY_FACTORIES: dict[str, Callable[[FederationConfig], FedAvg]] = {
    "fedavg": lambda f: FedAvg(**_common(f)),
    "fedavgm": lambda f: FedAvgM(**_common(f), server_learning_rate=f.server_step(), server_momentum=f.server_momentum),
    "fedprox": lambda f: FedProx(**_common(f), proximal_mu=f.proximal_mu),
    "fedadam": lambda f: FedAdam(**_common(f), eta=f.server_step(), eta_l=f.run.train.lr, tau=1e-3),
    "fedyogi": lambda f: FedYogi(**_common(f), eta=f.server_step(), eta_l=f.run.train.lr, tau=1e-3),
}


def build_strategy(fed: FederationConfig, record: FederationRecord,
                   on_receive: Callable[[int, str, Message], None] | None = None) -> SiteAwareStrategy:
    inner: Strategy = STRATEGY_FACTORIES[fed.strategy](fed)
    if fed.dp:
        inner = DifferentialPrivacyServerSideFixedClipping(inner, noise_multiplier=fed.dp_noise,
                                                            clipping_norm=fed.dp_clip,
                                                            num_sampled_clients=fed.sampled_per_round())
    return SiteAwareStrategy(fed, inner, record, on_receive)


def _site_order(site: str) -> tuple[int, str]:
    """Sites by number (then unnamed nodes): the fixed order scores are summed in."""
    return (int(site), "") if site.isdigit() else (1 << 30, site)


def _metrics(msg: Message) -> dict[str, float]:
    recs = list(msg.content.metric_records.values())
    return {k: float(v) for k, v in recs[0].items()} if recs else {}  # type: ignore[arg-type]


class SiteAwareStrategy(Strategy):
    def __init__(self, fed: FederationConfig, inner: Strategy, record: FederationRecord,
                 on_receive: Callable[[int, str, Message], None] | None = None):
        self.fed, self.inner, self.record, self.on_receive = fed, inner, record, on_receive
        self.current: dict[str, np.ndarray] = {}
        self.evaluated: dict[str, np.ndarray] = {}
        # `average_last`: the last rounds' global models, (round, arrays), oldest first
        self.history: collections.deque[tuple[int, dict[str, np.ndarray]]] = collections.deque(
            maxlen=max(fed.average_last, 1))
        self.best: tuple[float, int, dict[str, np.ndarray]] | None = None
        self.node_site: dict[int, str] = {}
        self.dp_releases = 0
        self.frozen: list[str] = []  # hybrid start: views the sites hold at the closed form (`fed.held_rounds()`)
        self._t0 = 0.0
        self._sent = 0

    def summary(self) -> None:
        self.inner.summary()

    # -- training ---------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._t0 = time.time()
        self.current = from_record(arrays)
        rec = self.record.round(server_round)
        if self.frozen and server_round <= self.fed.held_rounds():
            config = ConfigRecord({**config, "frozen-views": ",".join(self.frozen)})
            rec["frozen_views"] = list(self.frozen)
        if isinstance(self.inner, FedAvgM):  # its step starts from the model the sites get (Flower's
            self.inner.current_arrays = arrays  # FedAvgM records it only once; we may hold arrays still)
        msgs = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._sent = record_bytes(arrays) + sum(len(str(v)) for v in config.values())
        rec["sampled"] = len(msgs)
        rec["bytes_sent"] += self._sent * len(msgs)
        return msgs

    def _site(self, msg: Message) -> str:
        node = msg.metadata.src_node_id
        if not msg.has_error():
            site = _metrics(msg).get("site")
            if site is not None:
                self.node_site[node] = str(int(site))
        return self.node_site.get(node, f"node-{node}")

    def _split(self, server_round: int, replies: Iterable[Message], phase: str) -> list[Message]:
        rec = self.record.round(server_round)
        ok = []
        for msg in replies:
            site = self._site(msg)
            if self.on_receive is not None:
                self.on_receive(server_round, phase, msg)
            if msg.has_error():
                rec[f"{phase}_failures"] += 1
                rec["failed_sites"].append({"site": site, "phase": phase, "reason": str(msg.error.reason)[-500:]})
                log.warning("round %d: site %s failed in %s: %s", server_round, site, phase,
                            str(msg.error.reason).strip().splitlines()[-1:] or "")
            else:
                ok.append(msg)
        need = self.fed.required_per_round() if phase == "train" else min(self.fed.required_per_round(), self.fed.sites)
        if len(ok) < need:
            rec["status"] = "failed"
            raise RoundFailed(f"round {server_round}: {len(ok)} site(s) answered {phase}, the minimum is {need} "
                              f"({rec[f'{phase}_failures']} failed)")
        return ok

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ok = self._split(server_round, replies, "train")
        rec = self.record.round(server_round)
        updates, weights, losses = [], [], []
        for msg in ok:
            m, arrays = _metrics(msg), from_record(msg.content["arrays"])
            got = record_bytes(msg.content["arrays"]) + 8 * len(m)
            rec["bytes_received"] += got
            self.record.site(server_round, self._site(msg)).update(
                {"train_loss": m.get("train-loss"), "local_val_R@1": m.get("local-val-R@1"), "examples": int(m["num-examples"]),
                 "train_seconds": round(m.get("seconds", 0.0), 3), "bytes_sent": self._sent, "bytes_received": got,
                 "arrays": len(arrays), "update_norm": float(np.sqrt(sum(
                     float(((v.astype(np.float64) - self.current[k]) ** 2).sum()) for k, v in arrays.items()
                     if k in self.current)))})
            updates.append((m["num-examples"], arrays))
            weights.append(m["num-examples"])
            losses.append(m.get("train-loss", np.nan))
        new, count = aggregate_per_parameter(self.current, updates)
        rec["arrays_trained"] = sum(1 for c in count.values() if c)
        rec["train_loss"] = float(np.average(losses, weights=weights))
        untouched = [k for k, c in count.items() if c == 0]
        if self.fed.dp:
            completed = []
            for msg, (_, arrays) in zip(ok, updates):  # zero update where the site did not train
                full = {k: arrays.get(k, cur) for k, cur in self.current.items()}
                completed.append(copy.copy(msg))  # the site's own message stays as received
                completed[-1].content = RecordDict({"arrays": to_record_np(full),
                                                    "metrics": MetricRecord({"num-examples": 1.0})})
            agg, _ = self.inner.aggregate_train(server_round, completed)
            if agg is None:
                rec["status"] = "failed"
                raise RoundFailed(f"round {server_round}: Flower's DP wrapper refused to aggregate (a site failed)")
            out = from_record(agg)
            for k in untouched:
                out[k] = self.current[k]
            self.dp_releases += 1
            self._privacy()
            agg = to_record_np(out)
        else:
            carrier = copy.copy(ok[0])  # Flower's strategy sees one reply: the per-parameter average, weight 1
            carrier.content = RecordDict({"arrays": to_record_np(new), "metrics": MetricRecord({"num-examples": 1.0})})
            agg, _ = self.inner.aggregate_train(server_round, [carrier])
            if agg is None:
                rec["status"] = "failed"
                raise RoundFailed(f"round {server_round}: the {self.fed.strategy} strategy returned no arrays")
            # running statistics take the sites' average, not the server optimiser's step
            agg = to_record_np({k: new[k] if is_statistic(k) else v for k, v in from_record(agg).items()})
        # FedAdam/FedYogi compute in float64: back to the model's dtypes. An array no site trained this
        # round keeps its value exactly (a server optimiser's momentum would still move it)
        agg = to_record_np({k: (self.current[k] if k in untouched else v.astype(self.current[k].dtype, copy=False))
                            for k, v in from_record(agg).items()})
        return agg, MetricRecord({"train-loss": rec["train_loss"]})

    def _privacy(self) -> None:
        f = self.fed
        self.record.privacy = {
            "mechanism": "Flower DifferentialPrivacyServerSideFixedClipping (client-level, Gaussian)",
            "clipping_norm": f.dp_clip, "noise_multiplier": f.dp_noise, "sites_per_round": f.sampled_per_round(),
            "releases": self.dp_releases, "mu_gdp": gdp_mu(f.dp_noise, self.dp_releases),
            "delta": f.dp_delta, "epsilon": epsilon_for(f.dp_noise, self.dp_releases, f.dp_delta),
            "neighbouring": "add or remove one whole site", "sampling_amplification": False,
            "not_covered": ["the standardisation statistics round (per-feature mean/std/count of each site)",
                            "per-site validation and training metrics"]
            + (["the closed-form start (per-view scatter factors, per-pair cross-moments, candidate val scores)"]
               if f.start == "closed_form" else []),
        }

    # -- evaluation ---------------------------------------------------------------------------
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        self.evaluated = from_record(arrays)
        if self.fed.average_last > 1:
            self.history.append((server_round, self.evaluated))
        msgs = list(self.inner.configure_evaluate(server_round, arrays, config, grid))
        sent = record_bytes(arrays) + sum(len(str(v)) for v in config.values())
        self.record.round(server_round)["bytes_sent"] += sent * len(msgs)
        return msgs

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        # in site order: replies arrive in any order, and a float sum in another order can break an exact
        # tie between two rounds the other way (seen: rounds 6 and 9 of one federation, best round 6 or 9)
        ok = sorted(self._split(server_round, replies, "eval"), key=lambda m: _site_order(self._site(m)))
        rec = self.record.round(server_round)
        vals, ws = [], []
        for msg in ok:
            m = _metrics(msg)
            rec["bytes_received"] += 8 * len(m)
            self.record.site(server_round, self._site(msg)).update({"val_R@1": m["val-R@1"], "val_examples": int(m["num-examples"])})
            vals.append(m["val-R@1"])
            ws.append(m["num-examples"])
        score = float(np.average(vals, weights=ws))
        rec.update({"val_R@1": score, "status": "ok", "seconds": round(time.time() - self._t0, 3)})
        if self.best is None or round(score, 12) > round(self.best[0], 12):  # ties keep the earlier round
            self.best = (score, server_round, self.evaluated)
            self.record.best_round = server_round
        log.info("round %d: val mean R@1 %.4f over %d sites, %d failures", server_round, score, len(ok),
                 rec["train_failures"] + rec["eval_failures"])
        return MetricRecord({"val-R@1": score})
