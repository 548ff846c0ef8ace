"""The federated closed-form start without Flower: the statistics sites send are what is declared,
and the server's pooled solution equals the multi-view CCA solved on the pooled rows."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from numeric import assert_close_scaled

DIMS = {"a": 40, "b": 30, "c": 20}
HELD = [["a", "b", "c"], ["a", "b", "c"], ["a", "b"]]  # site 2 has no view c


def _tables(tmp_path: Path) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], object]:
    """3 sites of paired views from one latent, each site shifted (non-IID); train and val rows."""
    rng = np.random.default_rng(0)
    maps = {c: rng.normal(size=(8, d)) for c, d in DIMS.items()}
    train, val = [], []
    for s, n in enumerate((120, 90, 150)):
        for out, rows in ((train, n), (val, 30)):
            z = rng.normal(size=(rows, 8)) + s  # (N, 8) latent, shifted per site
            out.append({c: (z @ maps[c] + 0.3 * rng.normal(size=(rows, DIMS[c])) + s).astype(np.float32)
                        for c in HELD[s]})
    return train, val, maps


def _table(tmp_path: Path, feats: dict[str, np.ndarray], name: str):  # type: ignore[no-untyped-def]
    from crossalign.data.features import FeatureTable
    from crossalign.data.manifest import load_manifest

    n = len(next(iter(feats.values())))
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"id": f"{name}-{i}", "x": "x", "group": f"{name}-{i}"}) + "\n" for i in range(n)))
    return FeatureTable(load_manifest(path), np.arange(n), feats, {}, [])


def _model(train: list[dict[str, np.ndarray]]) -> SimpleNamespace:
    """Linear paths standardising with the pooled statistics (as the server's statistics round sets)."""
    from crossalign.align.heads import LinearPath

    lin = torch.nn.ModuleDict({c: LinearPath((d,), 16) for c, d in DIMS.items()})
    for c in DIMS:
        lin[c].norm.fit(torch.from_numpy(np.concatenate([t[c] for t in train if c in t])))
    return SimpleNamespace(linear=lin)


def _pooled(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The three sites' tables, the pooled-standardisation model, the pooled bases and per-pair moments."""
    from crossalign.federate.closed_form import pooled_bases, site_stage, stage_arrays

    train, val, _ = _tables(tmp_path)
    model = _model(train)
    tabs = [(_table(tmp_path, tr, f"t{s}"), _table(tmp_path, va, f"v{s}")) for s, (tr, va) in enumerate(zip(train, val))]
    bases = pooled_bases([site_stage("factor", model, tr, va, HELD[s], {})[0] for s, (tr, va) in enumerate(tabs)],
                         list(DIMS), 256)
    moments = [site_stage("moments", model, tr, va, HELD[s], stage_arrays(bases))[0] for s, (tr, va) in enumerate(tabs)]
    return train, val, model, tabs, bases, moments


def test_pooled_statistics_give_the_pooled_pca_and_mcca(tmp_path: Path) -> None:
    from crossalign.evaluate.closed_form import mcca_solve, pca_basis
    from crossalign.federate.closed_form import pooled_bases, site_stage, solve_candidates, stage_arrays

    train, val, _ = _tables(tmp_path)
    model = _model(train)
    tabs = [(_table(tmp_path, tr, f"t{s}"), _table(tmp_path, va, f"v{s}")) for s, (tr, va) in enumerate(zip(train, val))]
    factors = []
    for s, (tr, va) in enumerate(tabs):
        arrays, scalars = site_stage("factor", model, tr, va, HELD[s], {})
        assert not scalars
        assert set(arrays) == {f"{c}/{k}" for c in HELD[s] for k in ("factor", "count")}  # nothing else leaves
        for c in HELD[s]:
            assert arrays[f"{c}/factor"].shape == (DIMS[c], min(DIMS[c], len(tr)))
        factors.append(arrays)
    bases = pooled_bases(factors, list(DIMS), 256)

    def std(c: str, feats: list[dict[str, np.ndarray]]) -> np.ndarray:
        with torch.no_grad():
            return model.linear[c].norm(torch.from_numpy(np.concatenate([f[c] for f in feats if c in f]))).double().numpy()

    for c in DIMS:
        ref = pca_basis(std(c, train), 256, standardize=False)
        comps, var = bases[c]
        assert_close_scaled(torch.from_numpy(var), torch.from_numpy(ref.var), rtol=1e-4, msg=c)
        overlap = np.abs(comps.T @ ref.comps.astype(np.float64))  # same axes up to sign
        assert np.allclose(np.diag(overlap)[:10], 1.0, atol=1e-3), c

    arrays = stage_arrays(bases)
    moments = []
    for s, (tr, va) in enumerate(tabs):
        got, _ = site_stage("moments", model, tr, va, HELD[s], arrays)
        pairs = [f"{a}|{b}" for i, a in enumerate(HELD[s]) for b in HELD[s][i + 1:]]
        assert set(got) == {f"{p}/{k}" for p in pairs for k in ("cross", "count")}
        moments.append(got)
    cands = solve_candidates(bases, moments, 16)
    # the same solve on the pooled rows: each pair's cross-covariance over the rows holding both views
    z = {c: [std(c, [t]) @ bases[c][0] if c in t else None for t in train] for c in DIMS}
    cols = list(DIMS)
    cross = {}
    for i, a in enumerate(cols):
        for j, b in enumerate(cols[i + 1:], i + 1):
            both = [s for s in range(3) if z[a][s] is not None and z[b][s] is not None]
            za, zb = np.concatenate([z[a][s] for s in both]), np.concatenate([z[b][s] for s in both])
            cross[(i, j)] = za.T @ zb / len(za)
    cand = next(c for c in cands if c.dims == max(c.dims for c in cands) and abs(c.reg - 0.1) < 1e-9)
    proj, w = mcca_solve(cross, [bases[c][1] for c in cols], 0.1, 16)
    assert_close_scaled(torch.from_numpy(cand.weights), torch.from_numpy(w), rtol=1e-4, msg="canonical weights")


def test_scores_are_scalars_and_the_pick_is_a_closed_form(tmp_path: Path) -> None:
    from crossalign.evaluate.closed_form import PairScorer
    from crossalign.federate.closed_form import pick, site_stage, solve_candidates, stage_arrays

    _, val, model, tabs, bases, moments = _pooled(tmp_path)
    cands = solve_candidates(bases, moments, 16)
    scores = []
    for s, (tr, va) in enumerate(tabs):
        arrays, scalars = site_stage("score", model, tr, va, HELD[s], stage_arrays(bases, cands))
        assert arrays == {} and scalars["val-rows"] == len(va)
        assert all(isinstance(v, float) and 0.0 <= v <= 1.001 for v in scalars.values() if v != len(va))
        scores.append(scalars)
    cf = pick(bases, cands, scores)
    assert set(cf.maps) == set(DIMS) and cf.val_score > 0.5  # the latent is shared: far above chance (1/30)
    # the chosen maps reproduce the score the sites reported for them (site 2, views a and b)
    tr, va = tabs[2]
    with torch.no_grad():
        za, zb = (model.linear[c].norm(torch.from_numpy(val[2][c])).double().numpy() @ cf.maps[c].weight() for c in "ab")
    key = max((k for k in scores[2] if k.count("/") == 2),
              key=lambda k: sum(sc[k] * sc["val-rows"] for sc in scores))
    assert PairScorer(va.groups(), len(va))(za, zb) == pytest.approx(scores[2][key], rel=1e-6)


def test_unknown_stage_is_a_clear_error(tmp_path: Path) -> None:
    from crossalign.federate.closed_form import site_stage

    train, val, _ = _tables(tmp_path)
    with pytest.raises(ValueError, match="unknown closed-form stage"):
        site_stage("rows", _model(train), _table(tmp_path, train[0], "t"), _table(tmp_path, val[0], "v"), ["a"], {})


def test_routing_candidates_are_each_pairs_cca_and_the_choice_is_served_as_scored(tmp_path: Path) -> None:
    """Per-pair routing after the rounds (federate/routing.py): a pair's candidates are its own CCA on the
    pooled moments of the sites holding both views (site 2 has no view c); the server keeps, per pair, the
    best val-row-weighted score, ties to the simpler route; the chosen route's linear paths reproduce
    the projection the sites scored."""
    from crossalign.evaluate.closed_form import cca_solve, l2
    from crossalign.evaluate.tuning import POWERS
    from crossalign.federate.routing import pair_candidates, pick_routes, route_arrays

    train, val, model, _, bases, moments = _pooled(tmp_path)
    cands = pair_candidates(bases, moments, list(DIMS))
    assert set(cands) == {"a|b", "a|c", "b|c"}

    def z(c: str, feats: list[dict[str, np.ndarray]]) -> np.ndarray:  # pooled standardised rows in the pooled basis
        with torch.no_grad():
            x = model.linear[c].norm(torch.from_numpy(np.concatenate([f[c] for f in feats]))).double().numpy()
        return x @ bases[c][0]

    held_c = [t for t in train if "c" in t]  # sites 0 and 1
    za, zc = z("a", held_c), z("c", held_c)
    cand = cands["a|c"][0]
    ka, kc = len(cand.proj["a"]), len(cand.proj["c"])
    pa, _, s = cca_solve(za[:, :ka].T @ zc[:, :kc] / len(za), bases["a"][1][:ka], bases["c"][1][:kc], cand.reg)
    n = cand.weights.shape[0]
    assert_close_scaled(torch.from_numpy(cand.weights), torch.from_numpy(s[:n]), rtol=1e-6, msg="correlations")
    assert_close_scaled(torch.from_numpy(np.abs(cand.proj["a"][:, :4])), torch.from_numpy(np.abs(pa[:, :4])),
                        rtol=1e-5, msg="a's directions (up to sign)")
    arrays = route_arrays(bases, cands)
    assert {k.split("/")[1] for k in arrays if k.startswith("route/")} == set(cands)

    # scores as sites send them: a|b prefers a joint + CCA mixture, a|c ties joint and CCA, b|c no site scored
    i, nc, j = 3, 8, 1
    mix, cca_only = f"{i}/{nc}/{j}/2", f"{i}/{nc}/{j}/0"
    sites = [{"a|b/rows": 30.0, "a|b/joint": 0.50, f"a|b/{cca_only}": 0.70, f"a|b/{mix}": 0.80,
              "a|c/rows": 30.0, "a|c/joint": 0.60, f"a|c/{cca_only}": 0.60},
             {"a|b/rows": 10.0, "a|b/joint": 0.90, f"a|b/{cca_only}": 0.70, f"a|b/{mix}": 0.80}]
    choice = pick_routes(model, bases, cands, sites)  # type: ignore[arg-type]
    assert choice.routes["a|c"] == {"method": "joint"} and "b|c" not in choice.routes
    r = choice.routes["a|b"]
    assert r["method"] == "mix" and [p["method"] for p in r["parts"]] == ["joint", "cca"]
    assert [p["weight"] for p in r["parts"]] == [0.5, 0.5] and r["parts"][1]["width"] == nc
    assert abs(choice.report["a|b"]["val"]["chosen"] - 0.80) <= 1e-12 * 0.80  # (30 * 0.8 + 10 * 0.8) / 40
    # the served path: pooled standardisation, then the candidate's first nc directions times corr ** power
    from crossalign.align.heads import LinearPath

    c = cands["a|b"][i]
    for col in ("a", "b"):
        lp = LinearPath((DIMS[col],), nc)
        lp.load_state_dict({k.split(f"a|b@cca.{col}.")[1]: v for k, v in choice.state.items()
                            if k.startswith(f"router.paths.a|b@cca.{col}.")})
        with torch.no_grad():
            got = lp(torch.from_numpy(val[0][col])).double().numpy()
        want = z(col, [val[0]])[:, :len(c.proj[col])] @ (c.proj[col][:, :nc] * c.weights[:nc] ** POWERS[j])
        assert_close_scaled(torch.from_numpy(l2(got)), torch.from_numpy(l2(want)), rtol=1e-4, msg=col)


def test_gallery_scorer_is_the_pair_scorer_without_distractors_and_counts_them_otherwise() -> None:
    """Routing scores a site's val queries against its val + train rows: with no distractors that is the
    ordinary pair score; a training row closer to a query than its partner costs that query its R@1."""
    from crossalign.evaluate.closed_form import PairScorer
    from crossalign.federate.routing import GalleryScorer

    rng = np.random.default_rng(0)
    za = rng.normal(size=(12, 5))
    zb = za + 0.05 * rng.normal(size=(12, 5))
    groups = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    same = PairScorer(groups, 12)(za, zb)
    assert abs(GalleryScorer(groups, 12, 12)(za, zb) - same) <= 1e-12 * same
    ta, tb = rng.normal(size=(20, 5)), rng.normal(size=(20, 5))
    tb[0] = za[3]  # a distractor identical to query 3 of view a: it outranks 3's own partner (a -> b)
    sc = GalleryScorer(groups, 12, 32)
    full = sc(np.concatenate([za, ta]), np.concatenate([zb, tb]))
    assert full < sc(np.concatenate([za, ta]), np.concatenate([zb, 100 * np.ones((20, 5)) * [1, -1, 1, -1, 1]]))
    want = (23 / 24) + 1e-3 * np.mean([1.0] * 23 + [0.5])
    assert abs(full - want) <= 1e-9 * want
