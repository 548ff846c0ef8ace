"""Self-training pairs: confident mutual nearest neighbours across two views of the shared space.

Item i of view a and item j of view b become a pseudo-pair when each is the other's nearest
neighbour and their cosine is at least a threshold. The threshold is chosen on validation pairs
(whose truth is known) as the lowest cosine at which mutual-NN pairs are still right at least
`precision` of the time.
"""

from __future__ import annotations

import numpy as np

__all__ = ["choose_threshold", "mutual_nn"]


def mutual_nn(za: np.ndarray, zb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """za (Na, D), zb (Nb, D) L2-normalised -> (ia, ib, cosine) of the mutual nearest-neighbour pairs."""
    if len(za) == 0 or len(zb) == 0:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0, np.float32)
    s = za @ zb.T  # (Na, Nb)
    ab, ba = s.argmax(1), s.argmax(0)
    ia = np.nonzero(ba[ab] == np.arange(len(za)))[0]
    ib = ab[ia]
    return ia, ib, s[ia, ib].astype(np.float32)


def choose_threshold(za: np.ndarray, zb: np.ndarray, groups: np.ndarray | None = None,
                     precision: float = 0.9) -> float:
    """Lowest cosine t such that mutual-NN pairs with cosine >= t on row-aligned validation
    embeddings are correct (same row, or same group) >= `precision` of the time; inf when none is."""
    ia, ib, sim = mutual_nn(za, zb)
    if len(ia) == 0:
        return float("inf")
    ok = (ia == ib) if groups is None else (groups[ia] == groups[ib])
    order = np.argsort(-sim)
    prec = np.cumsum(ok[order]) / np.arange(1, len(order) + 1)  # precision of the top-k most confident
    good = np.nonzero(prec >= precision)[0]
    return float(sim[order][good.max()]) if len(good) else float("inf")
