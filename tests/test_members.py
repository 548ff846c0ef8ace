"""Member routes: a pair of views served by another trained model of the same views
(`ModelConfig.members`, route `{"method": "member", "member": NAME}`), e.g. the other federation of
`federate --start auto`. The member's blocks are exactly its own embeddings (its from-scratch tower
reads the raw input), the run folder round-trips strictly, ONNX holds it, and the joint model drops it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from numeric import assert_close_scaled


def _models():  # type: ignore[no-untyped-def]
    from crossalign.align.io import build_towers
    from crossalign.align.model import AlignmentModel
    from crossalign.config import RunConfig
    from crossalign.encoders import EncoderSpec, build_encoder

    rng = np.random.default_rng(0)
    n = 64
    feats = {"a": rng.standard_normal((n, 12)).astype(np.float32), "b": rng.standard_normal((n, 10)).astype(np.float32),
             "s": rng.standard_normal((n, 4, 6)).astype(np.float32)}
    tower = build_encoder("sensor:mlp", modality="sensor", input_shape=[4, 6], dim=16)
    specs = {"a": EncoderSpec(name="synthetic:a", modality="sensor", version="1", output_shape=(12,), trainable=False),
             "b": EncoderSpec(name="synthetic:b", modality="sensor", version="1", output_shape=(10,), trainable=False),
             "s": tower.spec}
    views = [{"column": "a", "encoder": "synthetic:a"}, {"column": "b", "encoder": "synthetic:b"},
             {"column": "s", "encoder": "sensor:mlp", "options": {"input_shape": [4, 6], "dim": 16}}]

    def build(head: dict, seed: int):  # type: ignore[no-untyped-def]
        cfg = RunConfig.from_dict({"model": {"views": views, "dim": 8, "head": head},
                                   "train": {"data": "unused", "out": "unused", "progress": False}})
        torch.manual_seed(seed)
        m = AlignmentModel(cfg.model, specs, build_towers(cfg, specs))
        m.fit_normalizers({c: torch.from_numpy(f) for c, f in feats.items() if c != "s"})
        return m.eval(), cfg

    main, cfg = build({"kind": "mlp", "hidden": 16}, 0)
    other, cfg_o = build({"kind": "mlp", "hidden": 24, "linear_path": True}, 1)
    return main, cfg, other, cfg_o, feats, specs


def _combined(main, cfg, other, cfg_o, routes):  # type: ignore[no-untyped-def]
    from crossalign.federate.members import combine

    return combine(main, cfg, other, cfg_o, "scratch", routes)


def test_member_route_serves_the_members_own_space_and_round_trips(tmp_path: Path) -> None:
    from crossalign.align.io import load_run, save_model
    from crossalign.export.onnx import export_onnx
    from crossalign.index.identity import routed_dim
    from crossalign.train.routing import joint_model

    main, cfg, other, cfg_o, feats, _ = _models()
    routes = {"a|s": {"method": "member", "member": "scratch"}, "b|s": {"method": "member", "member": "scratch"}}
    model, c = _combined(main, cfg, other, cfg_o, routes)
    assert not any(p.requires_grad for p in model.members.parameters())
    x = {k: torch.from_numpy(v) for k, v in feats.items()}
    with torch.no_grad():
        z = {k: model.embed(k, x[k]) for k in x}
        zm = {k: main.embed(k, x[k]) for k in x}
        zo = {k: other.embed(k, x[k]) for k in x}
    blocks = model.router.blocks
    # a|b keeps the main model's joint space, a|s and b|s the member's; each block / sqrt(V - 1 = 2)
    for key, src in (("a|b", zm), ("a|s", zo), ("b|s", zo)):
        lo, hi = blocks[key]
        for col in key.split("|"):
            assert_close_scaled(z[col][:, lo:hi] * np.sqrt(2), src[col], rtol=1e-5)
    # retrieval a <-> s ranks exactly as in the member's space: cosines are the member's / (V - 1)
    assert_close_scaled(z["a"] @ z["s"].T * 2, zo["a"] @ zo["s"].T, rtol=1e-5)

    save_model(model, c, tmp_path / "run", "best")
    back, c2 = load_run(tmp_path / "run")  # an ordinary run folder, read back strictly
    assert c2.model.members == c.model.members and model.out_dim == routed_dim(c2.to_dict()["model"])
    with torch.no_grad():
        for k, xk in x.items():
            assert torch.equal(back.embed(k, xk), z[k])
    joint, cj = joint_model(back, c2)
    assert not cj.model.members and not len(joint.members)
    with torch.no_grad():
        assert torch.equal(joint.embed("s", x["s"]), zm["s"])
    info = export_onnx(back, tmp_path / "onnx", columns=["a", "s"])
    assert all(i["parity_max_abs_diff"] < 1e-4 for i in info), info


def test_with_joint_swaps_the_joint_part_and_keeps_members(tmp_path: Path) -> None:
    """A federation's run folder holds `best` and `last` under one config.json: `last` is the combined
    model with the winner's final-round weights as its joint part, and both files load."""
    from crossalign.align.io import load_run, save_model
    from crossalign.federate.members import with_joint

    main, cfg, other, cfg_o, feats, _ = _models()
    routes = {"a|s": {"method": "member", "member": "scratch"}}
    combined = _combined(main, cfg, other, cfg_o, routes)
    with torch.no_grad():  # a later round of the main model: other weights, same shape
        later = copy.deepcopy(main)
        later.load_state_dict({k: v + 0.01 for k, v in main.state_dict().items()})
    last, c_last = with_joint(combined, later.eval())
    save_model(combined[0], combined[1], tmp_path / "run", "best")
    save_model(last, c_last, tmp_path / "run", "last")
    x = {k: torch.from_numpy(v) for k, v in feats.items()}
    b_best, _ = load_run(tmp_path / "run", "best")
    b_last, _ = load_run(tmp_path / "run", "last")
    blocks = combined[0].router.blocks
    with torch.no_grad():
        lo, hi = blocks["a|b"]
        assert_close_scaled(b_last.embed("a", x["a"])[:, lo:hi] * np.sqrt(2), later.embed("a", x["a"]), rtol=1e-5)
        lo, hi = blocks["a|s"]
        for k in ("a", "s"):
            assert torch.equal(b_last.embed(k, x[k])[:, lo:hi], b_best.embed(k, x[k])[:, lo:hi])  # the member's
    with pytest.raises(ValueError, match="do not fit the combined model"):
        with_joint(combined, other)


def test_member_routes_refused_clearly() -> None:
    from crossalign.align.model import AlignmentModel
    from crossalign.config import ModelConfig

    main, cfg, other, cfg_o, _, _ = _models()
    with pytest.raises(ValueError, match="member 'nobody' is not one of model.members"):
        _combined(main, cfg, other, cfg_o, {"a|s": {"method": "member", "member": "nobody"}})
    with pytest.raises(ValueError, match="model.members\\['x'\\]: expected"):
        AlignmentModel(ModelConfig.from_dict({**cfg.model.to_dict(), "members": {"x": {"dim": 4}}}), main.specs, {})


def test_choose_members_weighs_sites_by_their_val_rows_and_ties_keep_the_winner() -> None:
    from crossalign.federate.members import choose_members

    scores = {"closed_form": [{"a|b/joint": 0.9, "a|b/rows": 10.0, "a|s/joint": 0.5, "a|s/rows": 10.0},
                              {"a|s/joint": 0.7, "a|s/rows": 30.0}],
              "scratch": [{"a|b/joint": 0.8, "a|b/rows": 10.0, "a|s/joint": 0.9, "a|s/rows": 10.0},
                          {"a|s/joint": 0.6, "a|s/rows": 30.0, "b|s/joint": 0.4, "b|s/rows": 5.0}]}
    routes, report = choose_members(scores, "closed_form", "scratch")
    # a|s: closed_form (0.5*10 + 0.7*30) / 40 = 0.65 < scratch (0.9*10 + 0.6*30) / 40 = 0.675
    assert routes == {"a|s": {"method": "member", "member": "scratch"}}
    assert report["a|s"]["val"] == {"closed_form": pytest.approx(0.65), "scratch": pytest.approx(0.675)}
    assert report["a|b"]["chosen"] == "closed_form" and "b|s" not in report  # b|s: one federation only
    tie = {"w": [{"a|b/joint": 0.5, "a|b/rows": 4.0}], "o": [{"a|b/joint": 0.5, "a|b/rows": 4.0}]}
    assert choose_members(tie, "w", "o")[0] == {}
