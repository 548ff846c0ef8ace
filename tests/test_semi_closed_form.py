"""The semi-supervised closed form: PCA bases fitted on paired + unpaired items, whitening and
cross-covariances from the pairs (full matrices in that basis)."""

from __future__ import annotations

import numpy as np
import torch
from numeric import assert_close_scaled

from crossalign.evaluate.closed_form import PairScorer, mcca_solve
from crossalign.evaluate.tuning import ViewData
from crossalign.train.start import _tune_mcca

COLS = ["a", "b", "c"]


def test_mcca_full_diagonal_covariance_equals_the_diagonal_path() -> None:
    rng = np.random.default_rng(0)
    ks = [5, 7, 4]
    var = [rng.uniform(0.5, 3.0, k) for k in ks]
    cross = {(i, j): rng.standard_normal((ks[i], ks[j])) * 0.3 for i in range(3) for j in range(3) if i < j}
    p1, w1 = mcca_solve(cross, var, 0.1, 6)
    p2, w2 = mcca_solve(cross, [np.diag(v) for v in var], 0.1, 6)
    assert_close_scaled(torch.from_numpy(w2), torch.from_numpy(w1), rtol=1e-9)
    for a, b in zip(p1, p2):  # eigenvectors up to sign
        sign = np.sign((a * b).sum(0))
        assert_close_scaled(torch.from_numpy(b * sign), torch.from_numpy(a), rtol=1e-8)


def _planted(seed: int, n_pairs: int = 20, n_unpaired: int = 600, d: int = 200, r: int = 6):  # type: ignore[no-untyped-def]
    """Three views of an r-dim latent in d noisy dims: too few pairs to find the latent subspace,
    plenty of unpaired items of each view to find it (each item of its own, no partner anywhere)."""
    rng = np.random.default_rng(seed)
    mix = [rng.standard_normal((r, d)) for _ in COLS]

    def draw(n: int) -> list[np.ndarray]:
        z = rng.standard_normal((n, r))
        return [z @ m + 3.0 * rng.standard_normal((n, d)) for m in mix]

    return draw(n_pairs), draw(n_unpaired), draw(200), draw(200)


def test_unpaired_items_help_the_closed_form_on_a_planted_case() -> None:
    pairs, unpaired, val, test = _planted(0)
    score = PairScorer(None, 200)
    got = {}
    for name, semi in (("pairs", False), ("semi", True)):
        views = {c: ViewData.fit(pairs[i], val[i], 64, standardize=False,
                                 basis_from=np.concatenate([pairs[i], unpaired[i]]) if semi else None)
                 for i, c in enumerate(COLS)}
        cf = _tune_mcca(views, COLS, score, 32, full=semi)
        z = [cf.maps[c](test[i]) for i, c in enumerate(COLS)]
        got[name] = (cf.val_score, np.mean([score(z[i], z[j]) for i, j in ((0, 1), (0, 2), (1, 2))]))
    # Measured: val 0.59 -> 0.75, held-out 0.60 -> 0.76 (mean R@1 of 6 directions among 200).
    assert got["semi"][0] > got["pairs"][0] + 0.08, got
    assert got["semi"][1] > got["pairs"][1] + 0.08, got
