"""`federation.json` (per round and per site: loss, val R@1, bytes, time, failures) and `rounds.png`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossalign.saved import atomic_write_json

__all__ = ["FederationRecord", "RoundFailed"]


class RoundFailed(RuntimeError):
    """Fewer sites than the minimum answered a round."""


@dataclass
class FederationRecord:
    config: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"  # running | completed | failed
    error: str | None = None
    privacy: dict[str, Any] | None = None
    statistics: dict[str, Any] | None = None  # the one-off standardisation round
    closed_form: dict[str, Any] | None = None  # the federated closed-form start (round 0)
    routing: dict[str, Any] | None = None  # per-pair routing after the rounds (federate/routing.py)
    averaged: dict[str, Any] | None = None  # `average_last`: the rounds averaged, their val R@1, kept or not
    best_round: int | None = None
    best_val: float | None = None  # the best round's val R@1 over the sites (round 0: the closed form)
    seconds: float = 0.0
    candidates: dict[str, Any] | None = None  # start auto: each start's best val R@1, rounds, time, bytes
    winner: str | None = None  # start auto: the start kept
    per_pair: dict[str, Any] | None = None  # start auto: each pair's federation (federate/members.py)

    def round(self, rnd: int) -> dict[str, Any]:
        for r in self.rounds:
            if r["round"] == rnd:
                return r
        r = {"round": rnd, "sites": {}, "train_failures": 0, "eval_failures": 0, "failed_sites": [],
             "bytes_sent": 0, "bytes_received": 0, "seconds": 0.0, "val_R@1": None, "train_loss": None}
        self.rounds.append(r)
        return r

    def site(self, rnd: int, site: str) -> dict[str, Any]:
        return self.round(rnd)["sites"].setdefault(site, {})

    @property
    def failures(self) -> int:
        return sum(r["train_failures"] + r["eval_failures"] for r in self.rounds)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "crossalign-federation", "format": 1, "status": self.status, "error": self.error,
                "rounds_completed": sum(1 for r in self.rounds if r.get("status") == "ok"),
                "failures": self.failures, "best_round": self.best_round, "best_val_R@1": self.best_val,
                "seconds": round(self.seconds, 3), "candidates": self.candidates, "winner": self.winner,
                "privacy": self.privacy, "statistics": self.statistics, "closed_form": self.closed_form,
                "routing": self.routing, "averaged": self.averaged, "per_pair": self.per_pair, "config": self.config,
                "rounds": self.rounds}

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "federation.json"
        atomic_write_json(path, self.to_dict())
        try:
            self.plot(folder / "rounds.png")
        except Exception as e:  # noqa: BLE001 - a picture must never cost the record
            logging.getLogger(__name__).warning("rounds.png not written: %s", e)
        return path

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        done = [r for r in self.rounds if r.get("val_R@1") is not None]
        if not done:
            return
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        xs = [r["round"] for r in done]
        ys = [r["val_R@1"] for r in done]
        if self.closed_form and self.closed_form.get("val_R@1") is not None:  # round 0: the closed-form start
            xs, ys = [0, *xs], [self.closed_form["val_R@1"], *ys]
        a.plot(xs, ys, "k-o", lw=2, label="all sites (weighted)")
        sites = sorted({s for r in done for s in r["sites"]}, key=lambda s: int(s) if s.isdigit() else s)
        for s in sites:
            pts = [(r["round"], r["sites"][s].get("val_R@1")) for r in done if r["sites"].get(s, {}).get("val_R@1") is not None]
            if pts:
                a.plot(*zip(*pts), "--", alpha=0.7, label=f"site {s}")
            pts = [(r["round"], r["sites"][s].get("train_loss")) for r in done if r["sites"].get(s, {}).get("train_loss") is not None]
            if pts:
                b.plot(*zip(*pts), "-", alpha=0.8, label=f"site {s}")
        for r in self.rounds:
            if r["train_failures"] or r["eval_failures"]:
                a.axvline(r["round"], color="red", alpha=0.3)
        a.set(xlabel="round", ylabel="val mean R@1 (global model)", title="validation at each site")
        b.set(xlabel="round", ylabel="local train loss", title="local training")
        a.legend(fontsize=7)
        b.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
