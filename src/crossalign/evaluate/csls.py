"""CSLS (hubness correction) for one pair of spaces, chosen on validation: shared by `train.hubness`
(train/hubness.py) and the baselines (evaluate/baselines.py), so both get the same correction on the
same grid and neither is compared against a plain-cosine version of the other.

For a pair (a, b): s(x, y) - w (r_a(y) + r_b(x)), with r_v(z) the mean similarity of z to its k nearest
items of a bank of view v's training items. Candidates: "off" and every (k, w) of KS x WEIGHTS; each
is scored by R@1 averaged over a -> b and b -> a on validation, then MRR; a correction must be
strictly better than "off".
"""

from __future__ import annotations

import numpy as np

from crossalign.evaluate.retrieval import score_margin, score_ranks

__all__ = ["KS", "MAX_BANK", "OFF", "WEIGHTS", "choose_pair", "choose_pair_margin", "csls_vectors", "parse", "topk_means"]

KS, WEIGHTS = (10, 30, 100), (0.5, 1.0)  # neighbours in the bank; weight of the penalty
OFF = "off"
MAX_BANK = 4096  # training items a bank holds (a seeded sample beyond: each query pays bank x width)


def parse(name: str) -> tuple[int, float]:
    """"k30/w0.5" -> (30, 0.5)."""
    k, w = name[1:].split("/w")
    return int(k), float(w)


def topk_means(z: np.ndarray, bank: np.ndarray, ks: tuple[int, ...] = KS, chunk: int = 1024) -> dict[int, np.ndarray]:
    """{k: (N,)} mean similarity of each row of z to its k nearest bank rows (rows in chunks, so a large
    split never holds its whole (N, n) score matrix; only the top max(ks) are sorted)."""
    top = min(max(ks), len(bank))
    parts = []
    for i in range(0, len(z), chunk):
        s = z[i:i + chunk] @ bank.T  # (c, n)
        if top < s.shape[1]:
            s = -np.partition(-s, top - 1, axis=1)[:, :top]  # (c, top): the top values, unordered
        parts.append(-np.sort(-s, axis=1))  # descending
    s = np.concatenate(parts) if parts else np.zeros((0, top), z.dtype)
    return {k: s[:, :min(k, top)].mean(1) for k in ks}


def _score(s: np.ndarray, groups: np.ndarray | None) -> tuple[float, float]:
    """(R@1, MRR) of an (N, N) score matrix, averaged over rows -> columns and columns -> rows."""
    ra, rb = score_ranks(s, groups), score_ranks(s.T, groups)
    return float(((ra <= 1).mean() + (rb <= 1).mean()) / 2), float(((1 / ra).mean() + (1 / rb).mean()) / 2)


def choose_pair(za: np.ndarray, zb: np.ndarray, bank_a: np.ndarray, bank_b: np.ndarray,
                groups: np.ndarray | None) -> tuple[str, dict[str, tuple[float, float]]]:
    """Validation vectors of the two views (row i of each a pair) and their banks -> (winner, {candidate:
    (R@1, MRR)}); ties keep the earlier candidate, so "off" unless a correction is strictly better."""
    win, scores, _ = choose_pair_margin(za, zb, bank_a, bank_b, groups, margin=False)
    return win, scores


def choose_pair_margin(za: np.ndarray, zb: np.ndarray, bank_a: np.ndarray, bank_b: np.ndarray,
                       groups: np.ndarray | None, margin: bool = True) -> tuple[str, dict[str, tuple[float, float]], float]:
    """`choose_pair`, and the winner's `score_margin` averaged over both directions (0.0 unless `margin`)."""
    s = za @ zb.T  # (N, N)
    ra, rb = topk_means(za, bank_b), topk_means(zb, bank_a)

    def matrix(name: str) -> np.ndarray:  # (N, N) the pair's scores with `name` applied
        if name == OFF:
            return s
        k, w = parse(name)
        return s - w * (ra[k][:, None] + rb[k][None, :])

    order = [OFF] + [f"k{k}/w{w}" for k in KS for w in WEIGHTS]
    scores = {m: _score(matrix(m), groups) for m in order}
    win = max(order, key=lambda m: (scores[m], -order.index(m)))
    if not margin:
        return win, scores, 0.0
    best = matrix(win)
    return win, scores, (score_margin(best, groups) + score_margin(best.T, groups)) / 2


def csls_vectors(za: np.ndarray, zb: np.ndarray, bank_a: np.ndarray, bank_b: np.ndarray,
                 choice: str) -> tuple[np.ndarray, np.ndarray]:
    """Both views' vectors with `choice` applied: two coordinates each, so that the dot product is the
    CSLS score ([za, 1, -w r_b(x)] . [zb, -w r_a(y), 1]); unchanged for "off". Rankings only: the
    vectors are not unit length (align/hubness.py builds the unit-length form a model serves)."""
    if choice == OFF:
        return za, zb
    k, w = parse(choice)
    rb, ra = topk_means(za, bank_b, (k,))[k], topk_means(zb, bank_a, (k,))[k]
    one_a, one_b = np.ones((len(za), 1), za.dtype), np.ones((len(zb), 1), zb.dtype)
    return (np.hstack([za, one_a, -w * rb[:, None]]).astype(za.dtype),
            np.hstack([zb, -w * ra[:, None], one_b]).astype(zb.dtype))
