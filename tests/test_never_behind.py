"""Tuned baselines (validation only), the closed-form start that keeps crossalign from falling behind
them, seeds, and the benchmark table."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import small_config


def _synthetic_table(n: int = 600, d_a: int = 120, d_b: int = 80, latent: int = 8, noise: float = 2.0,
                     seed: int = 0):  # type: ignore[no-untyped-def]
    """Two frozen 'encoder' views that share a latent linearly, under heavy isotropic noise: a
    regularised linear closed form (CCA) is the right model and from-scratch MLP heads overfit."""
    from crossalign.data.features import FeatureTable
    from crossalign.data.manifest import Manifest
    from crossalign.encoders import EncoderSpec

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent))
    a = z @ rng.standard_normal((latent, d_a)) + noise * rng.standard_normal((n, d_a))
    b = z @ rng.standard_normal((latent, d_b)) + noise * rng.standard_normal((n, d_b))
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    rows = [{"id": f"r{i}", "split": str(split[i]), "sensor_a": "-", "sensor_b": "-"} for i in range(n)]
    specs = {c: EncoderSpec(name=f"synthetic:{c}", modality="sensor", version="1", output_shape=(d,), trainable=False)
             for c, d in (("sensor_a", d_a), ("sensor_b", d_b))}
    feats = {"sensor_a": a.astype(np.float32), "sensor_b": b.astype(np.float32)}
    return FeatureTable(Manifest(rows, None, Path.cwd()), np.arange(n), feats, specs, [])


def _synthetic_config(out: Path, **train: object):  # type: ignore[no-untyped-def]
    from crossalign.config import RunConfig

    t = {"out": str(out), "epochs": 15, "progress": False, "seed": 0, "data": "unused"}
    t.update(train)
    return RunConfig.from_dict({"model": {"views": [{"column": "sensor_a", "encoder": "synthetic:sensor_a"},
                                                    {"column": "sensor_b", "encoder": "synthetic:sensor_b"}],
                                          "dim": 32}, "train": t})


def test_never_behind_a_regularised_closed_form(tmp_path: Path) -> None:
    """Where a regularised closed form is optimal, crossalign (candidates chosen on validation) is
    within 0.01 of the best tuned baseline on test, and never below the closed form on validation."""
    from crossalign.align.io import load_run
    from crossalign.evaluate.baselines import run_baselines
    from crossalign.evaluate.run_eval import evaluate_model

    table = _synthetic_table()
    cfg = _synthetic_config(tmp_path / "run")
    from crossalign.recipes.align import train

    run, _ = train(cfg, resume=False, table=table, progress=False)
    res = json.loads((run / "train_result.json").read_text())
    assert set(res["candidates"]) == {"scratch", "closed_form", "fine_tuned"}
    vals = {k: v["val_mean/R@1"] for k, v in res["candidates"].items()}
    assert vals[res["winner"]] == max(vals.values())
    assert res["margin"] == pytest.approx(vals[res["winner"]] - sorted(vals.values())[-2], rel=1e-6)
    model, cfg_run = load_run(run)  # an ordinary run folder, whichever candidate won
    ours = evaluate_model(model, cfg_run, table, "test").metrics["mean/R@1"]
    base = run_baselines(table, ["sensor_a", "sensor_b"], methods=["cca", "ridge", "procrustes"])
    best = max(m["mean/R@1"] for m in base.values())
    assert ours >= best - 0.01, (ours, {k: m["mean/R@1"] for k, m in base.items()}, res)


def test_closed_form_start_equals_the_closed_form(tmp_path: Path) -> None:
    """A model started from the closed form embeds exactly as the tuned closed form does."""
    from crossalign.evaluate.closed_form import l2
    from crossalign.recipes.align import _build
    from crossalign.train.start import apply_closed_form, fit_closed_form

    table = _synthetic_table(n=400)
    cfg = _synthetic_config(tmp_path / "x")
    cfg.model.head.linear_path = True
    tr, va = table.split("train"), table.split("val")
    model = _build(cfg, dict(table.specs), tr)
    cf = fit_closed_form(model, tr, va, kernel=False)  # the kernel start has its own test (test_kernel_start)
    assert cf is not None and cf.method in ("cca", "ridge", "procrustes")
    apply_closed_form(model, cf)
    model.eval()
    te = table.split("test")
    for col in ("sensor_a", "sensor_b"):
        x = torch.from_numpy(te.features[col])
        got = model.embed(col, x).detach().numpy()
        std = model.linear[col].norm(x.float()).numpy()
        ref = l2(np.pad(cf.maps[col](std), ((0, 0), (0, 32 - cf.maps[col].proj.shape[1]))))
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * float(np.abs(ref).max()))


def test_baselines_choose_on_validation_only() -> None:
    """Poisoning the test split changes the test scores but none of the choices."""
    from crossalign.evaluate.baselines import run_baselines

    clean = _synthetic_table(n=400, noise=1.0)
    poisoned = copy.copy(clean)
    test = np.array([r["split"] == "test" for r in clean.manifest.rows])
    rng = np.random.default_rng(1)
    poisoned.features = {c: np.where(test[:, None], rng.standard_normal(f.shape).astype(np.float32) * 50, f)
                         for c, f in clean.features.items()}
    methods = ["cca", "kcca", "ridge", "procrustes"]
    sel_a: dict = {}
    sel_b: dict = {}
    ra = run_baselines(clean, ["sensor_a", "sensor_b"], methods=methods, selected=sel_a)
    rb = run_baselines(poisoned, ["sensor_a", "sensor_b"], methods=methods, selected=sel_b)
    assert sel_a == sel_b and set(sel_a) == set(methods)
    assert all(sel_a[m]["sensor_a-sensor_b"]["params"] for m in methods)
    assert ra["cca"]["mean/R@1"] > 0.5 > rb["cca"]["mean/R@1"]  # the test split was read, after selection


def test_baseline_phase_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    from crossalign.evaluate.baselines import run_baselines

    run_baselines(_synthetic_table(n=200), ["sensor_a", "sensor_b"], methods=["cca", "random"], progress=True)
    err = capsys.readouterr().err
    assert "baselines" in err and "2/2" in err


def test_tuned_cca_beats_untuned_on_noisy_views() -> None:
    """Regularisation and dimensions chosen on validation beat a fixed tiny ridge on noisy data."""
    from crossalign.evaluate.closed_form import PairScorer, cca_solve, pair_score
    from crossalign.evaluate.tuning import ViewData, tune_cca

    t = _synthetic_table(n=800, noise=3.0)
    tr, va, te = t.split("train"), t.split("val"), t.split("test")
    a = ViewData.fit(tr.features["sensor_a"], va.features["sensor_a"])
    b = ViewData.fit(tr.features["sensor_b"], va.features["sensor_b"])
    f = tune_cca(a, b, PairScorer(None, len(va)))
    tuned = pair_score(f.maps[0](te.features["sensor_a"]), f.maps[1](te.features["sensor_b"]), None)
    pa, pb, _ = cca_solve(a.tr.T @ b.tr / len(a.tr), a.basis.var, b.basis.var, 1e-3)
    fixed = pair_score(a.basis.scores(te.features["sensor_a"]) @ pa, b.basis.scores(te.features["sensor_b"]) @ pb, None)
    assert tuned > fixed + 0.05, (tuned, fixed, f.params)


def test_encoder_baseline_only_for_a_shared_space() -> None:
    from crossalign.evaluate.baselines import run_baselines
    from crossalign.encoders import EncoderSpec

    t = _synthetic_table(n=200, d_a=40, d_b=40, noise=0.3)
    assert "encoder" not in run_baselines(t, ["sensor_a", "sensor_b"], methods=["encoder"])
    shared = EncoderSpec(name="synthetic:shared", modality="sensor", version="1", output_shape=(40,), trainable=False)
    t.specs = {"sensor_a": shared, "sensor_b": shared}
    t.features["sensor_b"] = t.features["sensor_a"] + 0.01 * t.features["sensor_b"]
    assert run_baselines(t, ["sensor_a", "sensor_b"], methods=["encoder"])["encoder"]["mean/R@1"] > 0.9


def test_benchmark_trains_what_train_trains(scenes_small: Path, tmp_path: Path) -> None:
    """A from-scratch tower: features prepared by `train` itself or handed in (as `benchmark` does)
    give bit-identical weights with the same seed."""
    from crossalign.recipes.align import prepare_features, train

    cfg = small_config(scenes_small, tmp_path / "a", epochs=1)
    cfg.model.views = [v for v in cfg.model.views if v.column in ("text", "sensor")]
    cfg_b = copy.deepcopy(cfg)
    cfg_b.train.out = str(tmp_path / "b")
    train(cfg, resume=False, progress=False)
    table, _ = prepare_features(cfg_b, progress=False)
    train(cfg_b, resume=False, table=table, progress=False)
    for name in ("last", "model"):
        a, b = load_file(str(tmp_path / "a" / f"{name}.safetensors")), load_file(str(tmp_path / "b" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_seeds_mean_and_sd(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.recipes.benchmark import benchmark
    from crossalign.evaluate.seeds import aggregate

    agg = aggregate([{"x/R@1": 0.5}, {"x/R@1": 0.7}, {"x/R@1": 0.9}])
    assert agg["x/R@1"] == pytest.approx(0.7) and agg["x/R@1/sd"] == pytest.approx(0.2) and agg["seeds"] == 3
    cfg = small_config(scenes_small, tmp_path / "u", epochs=1, start="scratch")
    cfg.model.views = [v for v in cfg.model.views if v.column in ("text", "audio")]
    res = benchmark(cfg, tmp_path / "bench", progress=False, methods=["cca", "random"], seeds=2)
    runs = [json.loads((tmp_path / "bench" / f"run-seed{s}" / "metrics.json").read_text()) if
            (tmp_path / "bench" / f"run-seed{s}" / "metrics.json").exists() else None for s in (0, 1)]
    assert res["crossalign"]["seeds"] == 2 and "text->audio/R@1/sd" in res["crossalign"]
    saved = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert saved["cca"]["mean/R@1/sd"] == pytest.approx(0.0, abs=1e-12)  # deterministic given the splits
    assert set(json.loads((tmp_path / "bench" / "train_results.json").read_text())) == {"0", "1"}
    del runs


def test_methods_table_keeps_direction_names_whole(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from crossalign.recipes.benchmark import directions
    from crossalign.evaluate.report import methods_table, print_tables

    monkeypatch.setenv("COLUMNS", "80")
    cols = ["audio_fr", "text_zh", "image_xray"]
    dirs = directions(cols)
    names = ["crossalign", "cca", "kcca", "ridge", "procrustes", "encoder", "random"]
    for seeds in (1, 3):
        res = {n: {**{f"{d}/R@1": 0.5 for d in dirs}, **{f"{d}/R@1/sd": 0.01 for d in dirs}, "seeds": seeds}
               for n in names}
        print_tables(methods_table(res, dirs))
        text = capsys.readouterr().out
        assert "…" not in text
        for d in dirs:
            assert d in text, (d, text)
        assert ("0.500±0.010" in text) == (seeds > 1)


def test_kernel_cca_views_of_different_rank() -> None:
    """Kernel CCA between a low-rank view and a wider one: each side keeps its own PCA width."""
    import numpy as np

    from crossalign.evaluate.closed_form import PairScorer
    from crossalign.evaluate.tuning import ViewData, tune_kcca

    rng = np.random.default_rng(0)
    z = rng.standard_normal((120, 4))
    a = z @ rng.standard_normal((4, 30)) + 0.05 * rng.standard_normal((120, 30))  # (N, 30), rank ~30
    b = np.tanh(z @ rng.standard_normal((4, 200)))  # (N, 200): wider than a
    va, vb = ViewData.fit(a[:90], a[90:]), ViewData.fit(b[:90], b[90:])
    assert va.k != vb.k
    f = tune_kcca(va, vb, PairScorer(None, 30))
    za, zb = f.maps[0](a[90:]), f.maps[1](b[90:])
    assert za.shape == zb.shape and za.shape[0] == 30
