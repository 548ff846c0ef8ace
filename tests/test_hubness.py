"""Hubness correction (train.hubness): CSLS per pair of views, held inside unit vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numeric import assert_close_scaled


def _csls_check(hub, z: dict, full: dict) -> None:  # type: ignore[no-untyped-def]
    """Corrected a.b * K == CSLS over the full-width banks `full`; unit norms; a|c stays the plain cosine."""
    from crossalign.evaluate.retrieval import score_ranks

    h = {c: hub(c, z[c]) for c in "abc"}
    for c in "abc":
        assert_close_scaled(h[c].norm(dim=1), torch.ones(len(z[c])), rtol=1e-5)

    def r(x: torch.Tensor, other: str, k: int) -> torch.Tensor:
        return (x @ full[other].T).topk(k, dim=1).values.mean(1)

    csls = z["a"] @ z["b"].T - r(z["b"], "a", 5)[None, :] - r(z["a"], "b", 5)[:, None]
    assert_close_scaled(h["a"] @ h["b"].T * hub.K, csls, rtol=1e-5)
    assert (score_ranks((h["a"] @ h["b"].T).numpy()) == score_ranks(csls.numpy())).all()
    assert (score_ranks((h["b"] @ h["a"].T).numpy()) == score_ranks(csls.T.numpy())).all()
    # a|c is not corrected: its cross-view scores are the plain cosines / K
    assert_close_scaled(h["a"] @ h["c"].T * hub.K, z["a"] @ z["c"].T, rtol=1e-5)


def test_hub_vectors_rank_exactly_by_csls() -> None:
    """<z_a, z_b> * K = s - w (r_a(y) + r_b(x)): both directions rank as CSLS, every vector is unit
    length, and a view outside a corrected pair is untouched there. Also for a run saved with one
    full-width bank a view (the layout before per-pair banks)."""
    from crossalign.align.hubness import HubCorrection

    torch.manual_seed(0)
    pairs = {"a|b": {"k": 5, "weight": 1.0}, "b|c": {"k": 3, "weight": 0.5}}
    # float16 values: what per-pair banks hold (the full-width layout keeps float32)
    full = {c: F.normalize(torch.randn(n, 16), dim=-1).half().float() for c, n in (("a", 40), ("b", 50), ("c", 30))}
    z = {c: F.normalize(torch.randn(20, 16), dim=-1) for c in "abc"}
    hub = HubCorrection(["a", "b", "c"], {"pairs": pairs, "bank": {"a|b": {"a": 40, "b": 50},
                                                                   "b|c": {"b": 50, "c": 30}}}, 16)
    assert hub.width == 2 * 2 + 3 and hub.K == pytest.approx(1 + 2 * 1.5) and not hub.per_view
    for key in ("a|b", "b|c"):
        for c in key.split("|"):
            hub.banks[key][c].z.copy_(full[c])
    _csls_check(hub, z, full)
    old = HubCorrection(["a", "b", "c"], {"pairs": pairs, "bank": {"a": 40, "b": 50, "c": 30}}, 16)
    assert old.per_view
    for c in "abc":
        old.banks[c].z.copy_(full[c])
    _csls_check(old, z, full)


def test_routed_banks_hold_only_their_pair_block() -> None:
    """In a routed model two views share only their pair's block, so banks cut to that block give the
    same CSLS as full-width banks, at a fraction of the floats."""
    from crossalign.align.hubness import HubCorrection
    from crossalign.align.routes import Router

    torch.manual_seed(1)
    router = Router(["a", "b", "c"], {}, {c: (8,) for c in "abc"}, 16)  # every pair 'joint': 3 blocks of 16
    blocks = router.blocks
    assert blocks == {"a|b": (0, 16), "a|c": (16, 32), "b|c": (32, 48)} and router.out_dim == 48

    def routed(c: str, n: int) -> torch.Tensor:
        x = F.normalize(torch.randn(n, 16), dim=-1)
        return router(c, x, torch.zeros(n, 8))  # (n, 48) unit rows, zero outside c's pairs

    full = {c: routed(c, n).half().float() for c, n in (("a", 40), ("b", 50), ("c", 30))}
    z = {c: routed(c, 20) for c in "abc"}
    pairs = {"a|b": {"k": 5, "weight": 1.0}, "b|c": {"k": 3, "weight": 0.5}}
    hub = HubCorrection(["a", "b", "c"], {"pairs": pairs, "bank": {"a|b": {"a": 40, "b": 50},
                                                                   "b|c": {"b": 50, "c": 30}}}, 48, blocks)
    for key in ("a|b", "b|c"):
        s0, s1 = blocks[key]
        for c in key.split("|"):
            assert hub.banks[key][c].z.shape[1] == 16
            hub.banks[key][c].z.copy_(full[c][:, s0:s1])
    _csls_check(hub, z, full)


def test_bank_float_cap_keeps_a_nested_seeded_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide block keeps fewer bank items (MAX_FLOATS), never under MIN_BANK, drawn from the view's
    seeded sample in rank order, so a narrower block's bank contains a wider one's; float16 values."""
    from types import SimpleNamespace

    import crossalign.train.hubness as th

    monkeypatch.setattr(th, "MAX_FLOATS", 1000 * 128)
    rng = np.random.default_rng(0)
    n = 3000
    banks = {c: (rng.standard_normal((n, 128)).astype(np.float32), rng.permutation(n)) for c in "ab"}
    got = th.pair_banks(SimpleNamespace(router=None, out_dim=128), banks, ["a|b"])["a|b"]  # type: ignore[arg-type]
    assert got["a"].shape == (1000, 128) and got["a"].dtype == np.float16
    z, rank = banks["a"]
    first = np.sort(np.argsort(rank)[:1000])
    assert np.array_equal(got["a"], z[first].astype(np.float16))  # the first of the seeded order, in item order
    narrow = th.pair_banks(SimpleNamespace(router=None, out_dim=32), {c: (b[0][:, :32], b[1]) for c, b in banks.items()},
                           ["a|b"])["a|b"]  # type: ignore[arg-type]
    assert len(narrow["a"]) == n  # 3000 x 32 values fit: every item
    assert set(map(bytes, got["a"][:, :32])) <= set(map(bytes, narrow["a"]))
    monkeypatch.setattr(th, "MAX_FLOATS", 10)
    assert len(th.pair_banks(SimpleNamespace(router=None, out_dim=128), banks, ["a|b"])["a|b"]["b"]) == th.MIN_BANK  # type: ignore[arg-type]


def test_bad_hubness_config(tmp_path: Path) -> None:
    from crossalign.align.hubness import HubCorrection
    from crossalign.config import ModelConfig, RunConfig

    views = [{"column": "a"}, {"column": "b"}]
    with pytest.raises(ValueError, match="model.hubness.pairs"):
        HubCorrection(["a", "b"], {"pairs": {"a|x": {"k": 3, "weight": 1.0}}, "bank": {"a": 5, "x": 5}}, 8)
    with pytest.raises(ValueError, match="model.hubness.pairs"):
        HubCorrection(["a", "b"], {"pairs": {"a|b": {"k": 0, "weight": 1.0}}, "bank": {"a": 5, "b": 5}}, 8)
    assert ModelConfig.from_dict({"views": views, "hubness": {}}).hubness == {}
    with pytest.raises(ValueError, match="train.hubness"):
        RunConfig.from_dict({"model": {"views": views}, "train": {"hubness": "sometimes"}})
    with pytest.raises(ValueError, match="bank"):
        HubCorrection(["a", "b"], {"pairs": {"a|b": {"k": 3, "weight": 1.0}}, "bank": {"a": 5}}, 8)
    with pytest.raises(ValueError, match=r"bank\['a\|b'\]\['b'\]"):
        HubCorrection(["a", "b"], {"pairs": {"a|b": {"k": 3, "weight": 1.0}}, "bank": {"a|b": {"a": 5, "b": 0}}}, 8)


def _noisy_pair(n_train: int = 200, n_val: int = 200, n_test: int = 200, d: int = 64, latent: int = 16,
                noise: float = 6.0):  # type: ignore[no-untyped-def]
    """Two views of a shared latent under heavy noise: R@1 about 0.2, where CSLS has room."""
    from crossalign.data.features import FeatureTable
    from crossalign.data.manifest import Manifest
    from crossalign.encoders import EncoderSpec

    rng = np.random.default_rng(0)
    n = n_train + n_val + n_test
    z = rng.standard_normal((n, latent))
    feats = {c: (z @ rng.standard_normal((latent, d)) + noise * rng.standard_normal((n, d))).astype(np.float32)
             for c in "ab"}
    split = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    rows = [{"id": f"r{i}", "split": split[i], "a": "-", "b": "-"} for i in range(n)]
    specs = {c: EncoderSpec(name=f"synthetic:{c}", modality="sensor", version="1", output_shape=(d,),
                            trainable=False) for c in "ab"}
    return FeatureTable(Manifest(rows, None, Path.cwd()), np.arange(n), feats, specs, [])


def _config(out: Path, hubness: str):  # type: ignore[no-untyped-def]
    from crossalign.config import RunConfig

    return RunConfig.from_dict({"model": {"views": [{"column": c, "encoder": f"synthetic:{c}"} for c in "ab"],
                                          "dim": 16},
                                "train": {"out": str(out), "epochs": 2, "progress": False, "seed": 0, "data": "unused",
                                          "start": "closed_form", "hubness": hubness,
                                          # the joint model alone: with the correction on, a two-view run
                                          # may also be routed to its closed forms (tests/test_route_csls.py)
                                          "route": "off"}})


def test_chosen_correction_is_what_the_run_serves(tmp_path: Path) -> None:
    """The run records every candidate's validation R@1 per pair; the saved run reproduces the chosen
    one exactly, its vectors are as wide as its config says (what `index build` checks), `off` gives
    the uncorrected model, choosing again (a resumed run) starts from the uncorrected model, and a
    sentence-transformers export refuses it with the reason while ONNX holds it."""
    from crossalign.align.embed import embed_table
    from crossalign.align.io import load_run
    from crossalign.evaluate.retrieval import retrieval_metrics
    from crossalign.index.identity import routed_dim, run_identity
    from crossalign.recipes.align import _hubness, train
    from crossalign.train.hubness import unhubbed

    table = _noisy_pair()
    va = table.split("val")
    off, _ = train(_config(tmp_path / "off", "off"), resume=False, table=table, progress=False)
    assert "hubness" not in json.loads((off / "train_result.json").read_text())
    plain, _ = load_run(off)
    assert plain.hub is None

    run, _ = train(_config(tmp_path / "auto", "auto"), resume=False, table=table, progress=False)
    rep = json.loads((run / "train_result.json").read_text())["hubness"]["a|b"]
    assert set(rep["val_R@1"]) == {"off"} | {f"k{k}/w{w}" for k in (10, 30, 100) for w in (0.5, 1.0)}
    assert rep["chosen"] != "off", rep  # heavy noise: the planted case where CSLS gains on validation
    assert rep["gain"] > 0 and rep["val_R@1"][rep["chosen"]] == max(rep["val_R@1"].values())
    from crossalign.evaluate.report import winner_line  # what `train` prints

    assert f"hubness corrected (CSLS, val R@1 gain): a<->b {rep['chosen'].replace('/', ' ')}" in winner_line(
        json.loads((run / "train_result.json").read_text()))
    model, cfg = load_run(run)
    assert model.hub is not None and model.out_dim == routed_dim(cfg.to_dict()["model"]) == 16 + 2 + 2
    assert run_identity(run).dim == model.out_dim
    from crossalign.export.st import st_supported

    assert "hubness" in (st_supported(model, "a") or "")  # sentence-transformers has no module for it
    from crossalign.export.onnx import export_onnx  # ONNX holds the banks and the top-k (onnxruntime parity)

    info = export_onnx(model, tmp_path / "onnx", columns=["a", "b"])
    assert all(i["dim"] == model.out_dim and i["parity_max_abs_diff"] < 1e-4 for i in info), info
    z = embed_table(model, va)
    got = (retrieval_metrics(z["a"], z["b"], va.groups())["R@1"] + retrieval_metrics(z["b"], z["a"], va.groups())["R@1"]) / 2
    # the served vectors rank as the chosen CSLS scores did; float32 ties on another CPU may move one row
    assert got == pytest.approx(rep["val_R@1"][rep["chosen"]], abs=1.0 / len(va) + 1e-9)
    base, _ = unhubbed(model, cfg)
    zb = embed_table(base, va)
    zp = embed_table(plain, va)
    assert_close_scaled(torch.from_numpy(zb["a"]), torch.from_numpy(zp["a"]), rtol=1e-5)  # same model underneath
    again = _hubness(cfg.__class__.from_dict({**cfg.to_dict(), "model": {**cfg.to_dict()["model"], "hubness": {}}}),
                     run, table.split("train"), va)
    assert again["hubness"]["a|b"]["chosen"] == rep["chosen"]
    assert load_run(run)[0].out_dim == model.out_dim  # corrected once, not twice



def test_corrected_run_is_served_over_http(tiny_run: Path, tmp_path: Path) -> None:
    """A run with image<->text corrected loads in a real `crossalign serve`: /v1/embeddings returns the
    library's unit vectors, as wide as /health says, and image . text ranks as CSLS."""
    import shutil

    from serving import embeddings_over_http

    from crossalign.align.embedder import Embedder
    from crossalign.align.io import load_run, save_model
    from crossalign.evaluate.run_eval import load_table
    from crossalign.train.hubness import HubChoice, hub_model, pair_banks, sample_banks

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    plain, cfg = load_run(run)
    table = load_table(cfg)
    banks = pair_banks(plain, sample_banks(plain, table.split("train"), None, 0), ["image|text"])["image|text"]
    choice = HubChoice()  # a fixed choice: this test is about serving it, not choosing it
    choice.hubness = {"pairs": {"image|text": {"k": 10, "weight": 1.0}},
                      "bank": {"image|text": {c: len(banks[c]) for c in ("image", "text")}}}
    choice.banks = {"image|text": {c: torch.from_numpy(banks[c]) for c in ("image", "text")}}
    hubbed, hcfg = hub_model(plain, cfg, choice)
    save_model(hubbed, hcfg, run, "best")
    (run / "model.safetensors").unlink(missing_ok=True)

    va = table.split("val")
    x = {c: torch.from_numpy(np.asarray(va.features[c])) for c in ("image", "text")}
    with torch.no_grad():
        z = {c: hubbed.embed(c, x[c]) for c in x}
        p = {c: plain.embed(c, x[c]) for c in x}
    r = {c: (p[c] @ choice.banks["image|text"][o].float().T).topk(10, dim=1).values.mean(1) for c, o in (("image", "text"), ("text", "image"))}
    csls = p["image"] @ p["text"].T - r["text"][None, :] - r["image"][:, None]
    assert_close_scaled(z["image"] @ z["text"].T * hubbed.hub.K, csls, rtol=1e-5)  # type: ignore[union-attr]

    texts = ["two small red circles", "a large blue square at the top"]
    ref = Embedder.from_run(run).embed("text", texts)
    got, dim = embeddings_over_http(run, texts, tmp_path / "serve.log")
    assert dim == hubbed.out_dim == plain.out_dim + 2 + 4
    assert_close_scaled(torch.from_numpy(got), torch.from_numpy(np.asarray(ref, dtype=np.float32)), rtol=1e-4)
    assert_close_scaled(torch.from_numpy(got).norm(dim=1), torch.ones(2), rtol=1e-5)


def test_baselines_get_the_same_correction_chosen_on_validation() -> None:
    """Every baseline but `random` chooses CSLS on validation like `train.hubness` (the planted noisy
    pair: CCA gains there), its test vectors rank by the CSLS scores, and `hubness=False` keeps the
    plain cosines."""
    from crossalign.evaluate.baselines import run_baselines
    from crossalign.evaluate.csls import csls_vectors, parse, topk_means
    from crossalign.evaluate.retrieval import score_ranks

    table = _noisy_pair()
    sel: dict = {}
    on = run_baselines(table, ["a", "b"], methods=["cca", "ridge", "random"], selected=sel)
    off = run_baselines(table, ["a", "b"], methods=["cca", "ridge", "random"], hubness=False)
    assert "csls" not in sel["random"]["a-b"]
    cca = sel["cca"]["a-b"]["csls"]
    assert cca["chosen"] != "off" and cca["val_gain"] > 0, cca
    # every metric of every direction equal would mean the correction was never applied (R@1 alone may tie)
    assert on["cca"] != off["cca"] and on["random"] == off["random"]

    torch.manual_seed(0)
    za, zb = (F.normalize(torch.randn(30, 8), dim=-1).numpy() for _ in range(2))
    bank_a, bank_b = (F.normalize(torch.randn(50, 8), dim=-1).numpy() for _ in range(2))
    k, w = parse("k10/w0.5")
    csls = za @ zb.T - w * (topk_means(za, bank_b, (k,))[k][:, None] + topk_means(zb, bank_a, (k,))[k][None, :])
    qa, qb = csls_vectors(za, zb, bank_a, bank_b, "k10/w0.5")
    assert_close_scaled(torch.from_numpy(qa @ qb.T), torch.from_numpy(csls), rtol=1e-5)
    assert (score_ranks(qb @ qa.T) == score_ranks(csls.T)).all()
    assert csls_vectors(za, zb, bank_a, bank_b, "off")[0] is za


def test_float16_bank_is_converted_once_and_refreshed_on_load() -> None:
    """The served path reuses one float32 copy of a float16 bank; loading weights (or any in-place
    write) makes the next call convert afresh, so a stale copy is never served."""
    from crossalign.align.hubness import _Bank

    b = _Bank(3, 4, torch.float16)
    first = b.float32()
    assert first.dtype == torch.float32 and b.float32() is first
    b.load_state_dict({"z": torch.full((3, 4), 0.5).half()})
    assert torch.equal(b.float32(), torch.full((3, 4), 0.5))
    b.z.mul_(2)
    assert torch.equal(b.float32(), torch.ones(3, 4))
