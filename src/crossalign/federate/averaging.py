"""`average_last`: the mean of the last rounds' global models as one more candidate after the rounds.

Each round's local schedule is one warm-up + cosine cycle, so the rounds' models are snapshots at the
ends of cycles, which stochastic weight averaging (Izmailov et al. 2018) averages. The sites score the
mean like a round; it replaces the best round only when their val R@1 is higher.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import Message, MessageType
from flwr.serverapp import Grid

from crossalign.federate.asking import ask_sites, sites_val
from crossalign.federate.config import FederationConfig
from crossalign.federate.params import to_record_np
from crossalign.federate.record import FederationRecord, RoundFailed
from crossalign.federate.strategy import SiteAwareStrategy

__all__ = ["average_rounds"]

log = logging.getLogger(__name__)


def average_rounds(grid: Grid, fed: FederationConfig, fed_json: str, strategy: SiteAwareStrategy,
                   record: FederationRecord, on_receive: Callable[[int, str, Message], None] | None) -> None:
    """`average_last`: the mean of the last rounds' global models, scored on the sites' val rows like a
    round (scalars back), kept as the best model when it beats the best round. A failed evaluation
    keeps the rounds' best and says why."""
    rounds = [r for r, _ in strategy.history]
    models = [a for _, a in strategy.history]

    def mean(k: str, v: np.ndarray) -> np.ndarray:  # an array no round moved (a held view) stays exact
        if not np.issubdtype(v.dtype, np.floating) or all(np.array_equal(m[k], v) for m in models):
            return v
        return np.mean([m[k].astype(np.float64) for m in models], 0).astype(v.dtype)

    avg = {k: mean(k, v) for k, v in models[-1].items()}
    info: dict[str, Any] = {"rounds": rounds}
    record.averaged = info
    try:
        evals = ask_sites(grid, fed, fed_json, "", to_record_np(avg), MessageType.EVALUATE, on_receive, info, phase="eval")
    except RoundFailed as e:
        info.update({"error": str(e), "kept": False})
        log.warning("averaged rounds not scored, the best round is kept: %s", e)
        return
    val = sites_val(evals)
    kept = strategy.best is None or val > strategy.best[0]
    info.update({"val_R@1": val, "kept": kept})
    log.info("mean of rounds %s: val mean R@1 %.4f (%s)", rounds, val,
             "kept" if kept else f"the best round's {strategy.best[0]:.4f} is kept")  # type: ignore[index]
    if kept:
        strategy.best = (val, rounds[-1], avg)
        record.best_round = rounds[-1]
