"""Routing with the hubness correction in view (train/route_csls.py) and the margin tie-break."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def test_routes_are_scored_as_the_corrected_run_serves_them(tmp_path: Path) -> None:
    """Each pair's route is chosen on its corrected validation score, and the hubness stage that runs
    after routing corrects the winner exactly as routing scored it (same bank sample, float16 as
    stored): its chosen correction reaches the routing's score, and the saved run reproduces it."""
    from test_routing import _config, _four_views

    from crossalign.align.embed import embed_table
    from crossalign.align.io import load_run
    from crossalign.evaluate.retrieval import retrieval_metrics
    from crossalign.recipes.align import train

    table = _four_views()
    run, _ = train(_config(tmp_path / "run", start="closed_form"), resume=False, table=table, progress=False)
    res = json.loads((run / "train_result.json").read_text())
    assert res["routed"] is True
    va = table.split("val")
    emb = embed_table(load_run(run)[0], va)
    corrected = 0
    for key, r in res["routes"].items():
        won = r["val"][r["chosen"]]
        assert won["R@1"] == max(v["R@1"] for v in r["val"].values()), key
        assert set(r["val_plain"]) <= set(r["val"]) and "csls" in won, key
        hub = res["hubness"][key]
        # one query either way: the served block is scaled by 1/sqrt(V-1) and rounded another way
        tol = 1.0 / len(va) + 1e-9
        assert abs(hub["val_R@1"][hub["chosen"]] - won["R@1"]) <= tol, (key, hub, won)
        x, y = key.split("|")
        served = (retrieval_metrics(emb[x], emb[y], va.groups())["R@1"]
                  + retrieval_metrics(emb[y], emb[x], va.groups())["R@1"]) / 2
        assert abs(served - won["R@1"]) <= tol, (key, served, won)
        corrected += hub["chosen"] != "off"
    assert corrected >= 1, res["hubness"]  # the case exercises the correction, not only "off"


def test_score_margin_and_the_tie_break_it_decides() -> None:
    """Two candidates at R@1 = MRR = 1 on validation: the one whose right answers stand further apart
    (in units of its own score spread) wins, before the candidate order does."""
    from crossalign.evaluate.retrieval import score_margin
    from crossalign.train.routing import RouteChoice, _select

    noise = np.random.default_rng(0).standard_normal((8, 8)) * 0.1
    clear, narrow = noise + 2.0 * np.eye(8), noise + 0.5 * np.eye(8)
    assert score_margin(clear) > score_margin(narrow) > 0
    assert abs(score_margin(10 * clear + 3) / score_margin(clear) - 1) < 1e-9  # in the space's own units
    assert score_margin(np.ones((3, 3)), np.zeros(3, int)) == 0.0  # everything relevant: no margin to take
    swapped = np.array([[0.0, 1.0], [1.0, 0.0]])  # each row's best is the other row's item
    assert score_margin(swapped) < 0
    assert score_margin(swapped, np.array([0, 0])) == 0.0 and score_margin(np.eye(4), np.array([0, 0, 1, 1])) > 0
    cands = {"joint": {"R@1": 0.9, "MRR": 0.95, "margin": 3.0},
             "cca": {"R@1": 1.0, "MRR": 1.0, "margin": 0.8},
             "kcca": {"R@1": 1.0, "MRR": 1.0, "margin": 1.1}}
    fitted = {m: ({"method": "joint"}, {}) for m in cands}
    out = RouteChoice()
    _select(out, "a|b", cands, {}, fitted)
    assert out.report["a|b"]["chosen"] == "kcca"
    cands["kcca"]["MRR"] = 0.999  # MRR still comes first
    _select(out, "a|b", cands, {}, fitted)
    assert out.report["a|b"]["chosen"] == "cca"
