"""Score-level mixture routes (train.route: auto): a pair served by sqrt(w1) u1 (+) sqrt(w2) u2 (+) ...,
so its cosine is the weighted sum of the parts' cosines, inside one ordinary run folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from numeric import assert_close_scaled


def _planted(n: int = 800, seed: int = 0):  # type: ignore[no-untyped-def]
    """b is a noisy tanh of a's 8-d latent: linear closed forms (CCA, ridge) and kernel CCA each see a
    different part of the relation, so their similarity matrices err differently and their mixture
    ranks better on validation than any one of them."""
    from crossalign.data.features import FeatureTable
    from crossalign.data.manifest import Manifest
    from crossalign.encoders import EncoderSpec

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 8))
    a = z @ rng.standard_normal((8, 20)) + 0.3 * rng.standard_normal((n, 20))
    b = np.tanh(3.0 * z @ rng.standard_normal((8, 30))) + 0.3 * rng.standard_normal((n, 30))
    feats = {"a": a.astype(np.float32), "b": b.astype(np.float32)}
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    rows = [{"id": f"r{i}", "split": str(split[i]), "a": "-", "b": "-"} for i in range(n)]
    specs = {c: EncoderSpec(name=f"synthetic:{c}", modality="sensor", version="1", output_shape=(f.shape[1],),
                            trainable=False) for c, f in feats.items()}
    return FeatureTable(Manifest(rows, None, Path.cwd()), np.arange(n), feats, specs, [])


def test_planted_mixture_beats_every_single_candidate_and_is_served(tmp_path: Path) -> None:
    """Validation prefers a mixture: it is chosen, saved as `{"method": "mix", ...}`, every vector stays
    unit, retrieval a <-> b reproduces the recorded validation scores and the cosine equals
    sum_i w_i cos_i of the parts; the ONNX export holds the mixture (onnxruntime parity)."""
    from crossalign.align.embed import embed_table
    from crossalign.align.io import load_run, save_model
    from crossalign.align.model import AlignmentModel
    from crossalign.align.routes import route_parts
    from crossalign.config import RunConfig
    from crossalign.evaluate.retrieval import retrieval_metrics
    from crossalign.export.onnx import export_onnx
    from crossalign.index.identity import routed_dim
    from crossalign.train.routing import choose_routes, routed_model

    table = _planted()
    tr, va = table.split("train"), table.split("val")
    cfg = RunConfig.from_dict({"model": {"views": [{"column": c, "encoder": f"synthetic:{c}"} for c in "ab"], "dim": 8},
                               "train": {"data": "unused", "out": str(tmp_path), "progress": False}})
    torch.manual_seed(0)
    joint = AlignmentModel(cfg.model, table.specs, {})  # untrained: the joint candidate is a poor one here
    joint.fit_normalizers({c: torch.from_numpy(tr.features[c]) for c in "ab"})
    choice = choose_routes(joint.eval(), cfg, tr, va)
    rep = choice.report["a|b"]
    singles = {m: s["R@1"] for m, s in rep["val"].items() if "+" not in m}
    assert {"joint", "cca", "kcca", "ridge", "procrustes", "asif"} <= set(singles)  # every closed form competes
    assert "+" in rep["chosen"] and rep["margin"] > 0.005, rep["chosen"]
    assert rep["val"][rep["chosen"]]["R@1"] == max(s["R@1"] for s in rep["val"].values()) > max(singles.values())
    route = choice.routes["a|b"]
    assert route["method"] == "mix" and route == rep["route"]
    parts = route_parts("a|b", route)
    assert abs(sum(w for w, _, _ in parts) - 1) < 1e-9 and len(parts) >= 2

    model, rcfg = routed_model(joint, cfg, choice)
    save_model(model, rcfg, tmp_path / "run", "best")
    model, rcfg = load_run(tmp_path / "run")  # an ordinary run folder, read back strictly
    widths = [int(r["width"]) if "width" in r else int(r.get("anchors", 8)) for _, r, _ in parts]
    assert model.out_dim == routed_dim(rcfg.to_dict()["model"]) == sum(widths)
    emb = embed_table(model, va)
    for c in "ab":
        assert_close_scaled(torch.from_numpy(emb[c]).norm(dim=1), torch.ones(len(va)), rtol=1e-5)
    for q, d in (("a", "b"), ("b", "a")):
        got = retrieval_metrics(emb[q], emb[d], va.groups())["R@1"]
        assert got == pytest.approx(rep["val"][rep["chosen"]][f"{q}->{d}"])
    # cos(block_a, block_b) = sum_i w_i cos_i: each part's own unit vectors, from the served modules
    r = model.router
    x = {c: torch.from_numpy(va.features[c]) for c in "ab"}
    with torch.no_grad():
        z = {c: model.embed(c, x[c]) for c in "ab"}
        j = {c: joint.embed(c, x[c]) for c in "ab"}
        want = sum(w * (r._single("a", p, k, j["a"], x["a"]) @ r._single("b", p, k, j["b"], x["b"]).T)
                   for w, p, k in parts)
    assert_close_scaled(z["a"] @ z["b"].T, want, rtol=1e-5)
    info = export_onnx(model, tmp_path / "onnx", columns=["a", "b"])
    assert all(i["dim"] == model.out_dim and i["parity_max_abs_diff"] < 1e-4 for i in info), info


def test_single_route_mode_and_bad_mixtures(capsys: pytest.CaptureFixture[str]) -> None:
    """`mix=False` (train.route: single) keeps one candidate per pair; malformed mixtures are refused."""
    from crossalign.align.model import AlignmentModel
    from crossalign.align.routes import Router
    from crossalign.config import RunConfig
    from crossalign.train.routing import choose_routes

    table = _planted(400)
    tr, va = table.split("train"), table.split("val")
    cfg = RunConfig.from_dict({"model": {"views": [{"column": c, "encoder": f"synthetic:{c}"} for c in "ab"], "dim": 8},
                               "train": {"data": "unused", "out": "unused", "progress": False, "route": "single"}})
    torch.manual_seed(0)
    joint = AlignmentModel(cfg.model, table.specs, {})
    joint.fit_normalizers({c: torch.from_numpy(tr.features[c]) for c in "ab"})
    choice = choose_routes(joint.eval(), cfg, tr, va, mix=False)
    assert choice.routes["a|b"]["method"] != "mix" and not any("+" in m for m in choice.report["a|b"]["val"])
    # a progress bar over the pairs (quiet lines off a terminal) changes nothing it chooses
    shown = choose_routes(joint.eval(), cfg, tr, va, mix=False, progress=True)
    assert "routing: 100% 1/1" in capsys.readouterr().err
    assert shown.routes == choice.routes and shown.report["a|b"]["val"] == choice.report["a|b"]["val"]
    shapes = {"a": (3,), "b": (3,)}
    for parts, bad in (([{"weight": 0.5, "method": "cca"}, {"weight": 0.25, "method": "asif"}], "sum to 1"),
                       ([{"weight": 0.5, "method": "cca"}, {"weight": 0.5, "method": "cca"}], "distinct"),
                       ([{"weight": 1.0, "method": "mix", "parts": []}], "distinct"),
                       ([], "parts")):
        with pytest.raises(ValueError, match=bad):
            Router(["a", "b"], {"a|b": {"method": "mix", "parts": parts}}, shapes, 4)


@pytest.mark.slow
def test_mixed_route_is_served_over_http(tiny_run: Path, tmp_path: Path) -> None:
    """A run whose image<->text pair is a mixture (a tuned closed form, ASIF and the joint space) loads in a
    real `crossalign serve`: /v1/embeddings returns the library's unit vectors, and image . text is the
    weighted cosine of the pair's parts / (views - 1)."""
    from serving import embeddings_over_http

    from crossalign.align.embedder import Embedder
    from crossalign.align.io import load_run, save_model
    from crossalign.align.routes import route_parts
    from crossalign.evaluate.run_eval import load_table
    from crossalign.train.routing import RouteChoice, _asif, _closed_forms, _route_state, routed_model

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    joint, cfg = load_run(run)
    table = load_table(cfg)
    tr, va = table.split("train"), table.split("val")
    cf = _closed_forms(cfg, joint.specs, tr, va, "image", "text", 0)
    m = "cca" if "cca" in cf else next(iter(cf))
    asif = _asif(tr, va, "image", "text")
    route = {"method": "mix", "parts": [{"weight": 0.5, **cf[m][0]}, {"weight": 0.25, **asif[0]},
                                        {"weight": 0.25, "method": "joint"}]}
    choice = RouteChoice()
    choice.routes = {"image|text": route}
    choice.state = _route_state("image|text", route, {m: cf[m][1], "asif": asif[1]})
    routed, rcfg = routed_model(joint, cfg, choice)
    save_model(routed, rcfg, run, "best")
    (run / "model.safetensors").unlink(missing_ok=True)
    assert json.loads((run / "config.json").read_text())["model"]["routes"]["image|text"]["method"] == "mix"

    # image . text = (0.5 cos_cf + 0.25 cos_asif + 0.25 cos_joint) / 3 (each view is in 3 pairs)
    x = {c: torch.from_numpy(np.asarray(va.features[c])) for c in ("image", "text")}
    r = routed.router
    assert r is not None
    with torch.no_grad():
        z = {c: routed.embed(c, x[c]) for c in x}
        j = {c: joint.embed(c, x[c]) for c in x}
        want = sum(w * r._single("image", p, k, j["image"], x["image"]) @ r._single("text", p, k, j["text"], x["text"]).T
                   for w, p, k in route_parts("image|text", route)) / 3
    assert_close_scaled(z["image"] @ z["text"].T, want, rtol=1e-5)
    assert_close_scaled(z["image"].norm(dim=1), torch.ones(len(va)), rtol=1e-5)

    texts = ["two small red circles", "a large blue square at the top"]
    ref = Embedder.from_run(run).embed("text", texts)
    got, dim = embeddings_over_http(run, texts, tmp_path / "serve.log")
    assert dim == routed.out_dim
    assert got.shape == (2, routed.out_dim)
    assert_close_scaled(torch.from_numpy(got), torch.from_numpy(np.asarray(ref, dtype=np.float32)), rtol=1e-4)
    assert_close_scaled(torch.from_numpy(got).norm(dim=1), torch.ones(2), rtol=1e-5)
