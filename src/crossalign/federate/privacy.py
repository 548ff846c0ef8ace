"""Privacy cost of client-level DP with Flower's server-side fixed clipping.

Each round releases mean(clipped site updates) + N(0, (z*C/n)^2): a Gaussian mechanism whose
noise is z times the L2 sensitivity (one site added or removed moves the sum by at most C).
T such rounds compose exactly to a mu-GDP mechanism with mu = sqrt(T) / z (Dong, Roth & Su
2019), and the tight (epsilon, delta) follows from the analytic Gaussian formula (Balle & Wang
2018). No sampling amplification is claimed. The privacy unit is a whole site.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.stats import norm

__all__ = ["epsilon_for", "gdp_mu"]


def gdp_mu(noise_multiplier: float, rounds: int) -> float:
    if noise_multiplier <= 0:
        return math.inf
    return math.sqrt(max(rounds, 0)) / noise_multiplier


def _delta(eps: float, mu: float) -> float:
    # the second term in log space: exp(eps) overflows long before the product does
    return float(norm.cdf(-eps / mu + mu / 2) - math.exp(eps + norm.logcdf(-eps / mu - mu / 2)))


def epsilon_for(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Smallest epsilon with (epsilon, delta)-DP after `rounds` releases (inf without noise)."""
    mu = gdp_mu(noise_multiplier, rounds)
    if rounds == 0:
        return 0.0
    if not math.isfinite(mu):
        return math.inf
    if _delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while _delta(hi, mu) > delta:
        hi *= 2
        if hi > 1e15:
            return math.inf
    return float(brentq(lambda e: _delta(e, mu) - delta, 0.0, hi, xtol=1e-9))
