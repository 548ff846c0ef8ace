"""What a federation is: sites, how the data is split between them, the Flower strategy, DP.

`FederationConfig` travels to every site as JSON inside a Flower `ConfigRecord` (settings only,
never data); `parse_partition` / `parse_site_modalities` turn the CLI's strings into fields.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossalign.config import ConfigBase, RunConfig

__all__ = ["STARTS", "STRATEGIES", "FederationConfig", "load_federation_config", "parse_partition", "parse_site_modalities"]

STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi")
STARTS = ("closed_form", "scratch", "auto")


def parse_partition(spec: str) -> tuple[str, str | float | None]:
    """'iid' | 'dirichlet:0.3' | 'column:site' -> (kind, argument)."""
    kind, _, arg = spec.partition(":")
    if kind == "iid" and not arg:
        return "iid", None
    if kind == "dirichlet":
        try:
            alpha = float(arg)
        except ValueError:
            raise ValueError(f"partition '{spec}': dirichlet needs a number, e.g. dirichlet:0.3") from None
        if not alpha > 0:
            raise ValueError(f"partition '{spec}': alpha must be > 0")
        return "dirichlet", alpha
    if kind == "column" and arg:
        return "column", arg
    raise ValueError(f"partition '{spec}': use iid, dirichlet:ALPHA or column:NAME")


def parse_site_modalities(spec: str) -> dict[int, list[str]]:
    """'0=image,text;1=text,audio' -> {0: ['image', 'text'], 1: ['text', 'audio']}."""
    out: dict[int, list[str]] = {}
    for part in [p.strip() for p in spec.split(";") if p.strip()]:
        site, eq, cols = part.partition("=")
        if not eq or not site.strip().isdigit():
            raise ValueError(f"site modalities '{part}': expected SITE=col,col (e.g. 0=image,text)")
        names = [c.strip() for c in cols.split(",") if c.strip()]
        if len(names) < 2:
            raise ValueError(f"site {site.strip()}: a site needs at least two views to align, got {names}")
        out[int(site)] = names
    return out


@dataclass
class FederationConfig(ConfigBase):
    run: RunConfig = field(default_factory=RunConfig)  # model + local training settings (train.epochs unused)
    sites: int = 2  # number of sites (Flower SuperNodes)
    partition: str = "iid"  # iid | dirichlet:ALPHA | column:NAME
    partition_key: str = "label"  # what dirichlet is non-IID over (label or group)
    site_modalities: dict[int, list[str]] = field(default_factory=dict)  # site -> its views (default: all)
    # closed_form: pooled multi-view CCA from site statistics, then rounds | scratch | auto: both federations,
    # the better on the sites' pooled val R@1 (as `train.start: auto` centrally; twice the rounds)
    start: str = "closed_form"
    # closed_form with from-scratch towers (and >= 2 other views): the closed form fits the other views, which
    # stay fixed, and the rounds train only the from-scratch towers into that space (as centrally); False: it
    # fits every view (gates 0) and the rounds fine-tune everything
    hybrid: bool = True
    # hybrid: rounds that hold the closed-form views still, later ones fine-tune every view; None: 60 % of
    # `rounds` (at least 1; on scenes 3 of 5 beat holding them all 5 rounds on the sites' val R@1, 0.923 vs 0.899)
    hybrid_rounds: int | None = None
    # closed_form: after the rounds, each pair of the closed-form views keeps the best on the sites' val rows
    # of the joint model, its own CCA (from the start's pooled moments) or a mixture (federate/routing.py).
    # Off by default: on scenes (3 seeds) it moved test mean R@1 by -0.001 to +0.002 (README)
    route: bool = False
    # after the rounds, the mean of the last N rounds' global models (weights and statistics) is one more
    # candidate, kept when the sites' val R@1 prefers it to the best single round (SWA over rounds;
    # each round's local schedule is one warm-up + cosine cycle). 0 or 1: off
    average_last: int = 0
    # start auto: after both federations, each pair of views is served by the one the sites' val rows
    # prefer (the other kept as a model member; federate/members.py). False: the better one serves every pair
    per_pair: bool = True
    strategy: str = "fedavg"
    proximal_mu: float = 0.0  # FedProx
    server_lr: float | None = None  # server step: FedAdam/FedYogi eta (None: 0.1), FedAvgM (None: 1.0)
    server_momentum: float = 0.9  # FedAvgM: momentum of the server's step (Hsu et al. 2019)
    rounds: int = 10
    local_epochs: int = 1
    fraction_fit: float = 1.0  # share of sites sampled per round
    min_sites: int = 0  # a round fails below this many successful sites (0: every sampled site)
    dp_clip: float = 0.0  # >0: client-level DP, server-side fixed clipping of each site's update (L2)
    dp_noise: float = 0.0  # Gaussian noise multiplier z (noise std = z * clip / sampled sites)
    dp_delta: float = 1e-5  # delta at which epsilon is reported
    site_cache: str = "{cache}/sites/site-{site}"  # each site's own feature cache; {cache}: CROSSALIGN_CACHE
    timeout: float = 3600.0  # seconds the server waits for a round's replies

    def __post_init__(self) -> None:
        if isinstance(self.run, dict):
            self.run = RunConfig.from_dict(self.run)
        self.site_modalities = {int(k): list(v) for k, v in self.site_modalities.items()}
        parse_partition(self.partition)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, not {self.start!r}")
        if self.start == "closed_form" and not self.run.model.head.linear_path:
            # the closed form lives in the linear paths (as centrally); a copy: the caller's config is not changed
            self.run = copy.deepcopy(self.run)
            self.run.model.head.linear_path = True
        if self.hybrid_rounds is not None and self.hybrid_rounds < 1:
            raise ValueError("hybrid_rounds must be >= 1 (or null: 60 % of the rounds)")
        if self.sites < 1 or self.rounds < 1 or self.local_epochs < 1:
            raise ValueError("sites, rounds and local_epochs must be >= 1")
        if not 0 < self.fraction_fit <= 1:
            raise ValueError("fraction_fit must be in (0, 1]")
        if self.min_sites < 0 or self.min_sites > self.sites:
            raise ValueError(f"min_sites must be between 0 and sites ({self.sites})")
        if self.average_last < 0:
            raise ValueError("average_last must be >= 0 (0 or 1: off)")
        if self.server_lr is not None and not self.server_lr > 0:
            raise ValueError("server_lr must be > 0 (or null: the strategy's default)")
        if not 0 <= self.server_momentum < 1:
            raise ValueError("server_momentum must be in [0, 1)")
        if self.proximal_mu < 0 or self.dp_clip < 0 or self.dp_noise < 0:
            raise ValueError("proximal_mu, dp_clip and dp_noise must be >= 0")
        if (self.dp_noise > 0) != (self.dp_clip > 0):
            raise ValueError("differential privacy needs both dp_clip > 0 and dp_noise > 0")
        if self.dp and self.start != "scratch":
            raise ValueError("DP covers the round updates only; the closed-form start sends its statistics without "
                             "noise, so a DP federation must use start scratch (--start scratch)")
        if self.dp and self.strategy in ("fedavgm", "fedadam", "fedyogi"):
            # behind Flower's DP wrapper a server optimiser would also step the noised running statistics
            raise ValueError("DP is accounted for FedAvg/FedProx aggregation only (use --strategy fedavg|fedprox)")
        cols = self.run.model.columns
        for s, views in self.site_modalities.items():
            if not 0 <= s < self.sites:
                raise ValueError(f"site_modalities names site {s}; sites are 0..{self.sites - 1}")
            bad = [c for c in views if c not in cols]
            if bad:
                raise ValueError(f"site {s}: {bad} are not views of the model ({cols})")

    @property
    def dp(self) -> bool:
        return self.dp_clip > 0 and self.dp_noise > 0

    def candidate(self, start: str) -> FederationConfig:
        """`start: auto`: this federation with one concrete start (closed_form adds the linear paths)."""
        if start not in ("closed_form", "scratch"):
            raise ValueError(f"a start candidate is closed_form or scratch, not {start!r}")
        return FederationConfig.from_dict({**self.to_dict(), "start": start}, "federation")

    def server_step(self) -> float:
        """The server's learning rate: `server_lr`, or the strategy's usual one (FedAdam/FedYogi 0.1,
        FedAvgM 1.0: the plain average plus momentum)."""
        if self.server_lr is not None:
            return self.server_lr
        return 1.0 if self.strategy == "fedavgm" else 0.1

    def views_of(self, site: int) -> list[str]:
        return list(self.site_modalities.get(site, self.run.model.columns))

    def held_rounds(self) -> int:
        """Hybrid start: how many first rounds hold the closed-form views still."""
        return self.hybrid_rounds if self.hybrid_rounds is not None else max(1, round(0.6 * self.rounds))

    def sampled_per_round(self) -> int:
        return max(int(self.sites * self.fraction_fit), 1, min(self.min_sites, self.sites))

    def required_per_round(self) -> int:
        return self.min_sites or self.sampled_per_round()

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["site_modalities"] = {str(k): v for k, v in self.site_modalities.items()}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def load_federation_config(path: str | Path) -> FederationConfig:
    """A YAML/JSON file with `model:`/`train:` (as for `crossalign train`) plus `federation:`."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    fed = dict(raw.pop("federation", None) or {})
    try:
        return FederationConfig.from_dict({**fed, "run": RunConfig.from_dict(raw)}, "federation")
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
