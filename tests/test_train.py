"""Trainer, save/load, resume, evaluation, baselines and tuning on small generated scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import small_config


def test_save_load_bit_identical(tiny_run: Path) -> None:
    from crossalign.align.io import load_run

    model, cfg = load_run(tiny_run)
    saved = load_file(str(tiny_run / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert cfg.model.columns == ["image", "text", "audio", "sensor"]
    model2, _ = load_run(tiny_run)
    x = torch.randn(4, *model.specs["audio"].output_shape)
    assert torch.equal(model.embed("audio", x), model2.embed("audio", x))


def test_resume_equals_uninterrupted(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.recipes.align import prepare_features, train

    cfg_a = small_config(scenes_small, tmp_path / "a", epochs=4)
    table, _ = prepare_features(cfg_a, progress=False)
    train(cfg_a, resume=False, table=table, progress=False)
    cfg_b = small_config(scenes_small, tmp_path / "b", epochs=4)
    train(cfg_b, resume=False, table=table, progress=False, stop_after=2)  # "killed" after epoch 2
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 2
    # A kill after the state was written but before `last` was refreshed: resume must not care.
    (tmp_path / "b" / "last.safetensors").write_bytes(b"half-written")
    train(cfg_b, resume=True, table=table, progress=False)
    a, b = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    la = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val/mean/R@1"] for r in la] == pytest.approx([r["val/mean/R@1"] for r in lb])


def test_seeded_runs_reproducible(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.recipes.align import prepare_features, train

    cfg = small_config(scenes_small, tmp_path / "x", epochs=2)
    table, _ = prepare_features(cfg, progress=False)
    train(cfg, resume=False, table=table, progress=False)
    cfg2 = small_config(scenes_small, tmp_path / "y", epochs=2)
    train(cfg2, resume=False, table=table, progress=False)
    a, b = load_file(str(tmp_path / "x" / "last.safetensors")), load_file(str(tmp_path / "y" / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_learns(scenes_small: Path, tmp_path: Path) -> None:
    """Audio<->text pairs are easy: a few epochs must beat chance by a wide margin on val."""
    from crossalign.recipes.align import train

    cfg = small_config(scenes_small, tmp_path / "r", epochs=8, lr=3e-3)
    cfg.model.views = [v for v in cfg.model.views if v.column in ("text", "audio")]
    _, res = train(cfg, resume=False, progress=False)
    n_val = res.history[-1]
    assert res.best_metric > 0.5, n_val


def test_evaluate_run_keys(tiny_run: Path) -> None:
    from crossalign.evaluate.run_eval import evaluate_run

    res = evaluate_run(tiny_run, split="test")
    m = res.metrics
    for key in ("text->image/R@1", "image->audio/R@10", "sensor->text/MRR", "audio->image/MdR", "mean/R@1",
                "image/zeroshot_acc", "image/hardneg_acc", "audio/hardneg_acc", "image-text/gap",
                "text/uniformity", "image/probe_acc"):
        assert key in m, key
    assert all(0.0 <= m[k] <= 1.0 for k in m if k.endswith("R@1"))
    assert json.loads((tiny_run / "metrics.json").read_text()) == pytest.approx(m, nan_ok=True)


def test_baselines_and_benchmark(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.evaluate.baselines import run_baselines
    from crossalign.recipes.benchmark import benchmark
    from crossalign.recipes.align import prepare_features

    cfg = small_config(scenes_small, tmp_path / "unused", epochs=2)
    cfg.model.views = [v for v in cfg.model.views if v.column in ("text", "audio")]
    table, _ = prepare_features(cfg, progress=False)
    res = run_baselines(table, ["text", "audio"], methods=["cca", "procrustes", "ridge", "random"])
    assert set(res) == {"cca", "procrustes", "ridge", "random"}
    assert set(res["cca"]) >= {"text->audio/R@1", "audio->text/R@1", "mean/R@1"}
    out = benchmark(cfg, tmp_path / "bench", table=table, progress=False, methods=["cca", "random"])
    saved = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert set(saved) == {"crossalign", "cca", "random"}
    assert saved["crossalign"]["text->audio/R@1"] == out["crossalign"]["text->audio/R@1"]


def test_tune_writes_best_config(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.config import load_config
    from crossalign.recipes.tune import tune

    cfg = small_config(scenes_small, tmp_path / "t", epochs=1)
    cfg.model.views = [v for v in cfg.model.views if v.column in ("text", "audio")]
    summary = tune(cfg, trials=2, out=tmp_path / "tune", progress=False)
    assert len(summary["trials"]) == 2
    best = load_config(tmp_path / "tune" / "best.yaml")
    assert best.train.lr == pytest.approx(summary["best_params"]["lr"])


def test_retrieval_metrics_reference() -> None:
    from crossalign.evaluate.retrieval import ranks, retrieval_metrics

    q = np.eye(3, dtype=np.float32)
    d = np.array([[0.9, 0.2, 0.1], [0.2, 0.3, 0.9], [0.1, 0.9, 0.3]], dtype=np.float32)  # 2 and 3 swapped
    assert ranks(q, d).tolist() == [1, 2, 2]
    m = retrieval_metrics(q, d)
    assert m["R@1"] == pytest.approx(1 / 3) and m["MRR"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert ranks(q, d, np.array([0, 1, 1])).tolist() == [1, 1, 1]  # same group counts as a hit
    collapsed = np.ones((4, 3), dtype=np.float32)
    assert retrieval_metrics(collapsed, collapsed)["R@1"] == 0.0  # ties count against the query


def test_exact_cca_recovers_shared_signal() -> None:
    """Two views that share a 16-d latent: tuned exact CCA must retrieve far above chance, and a
    kernel CCA tuned the same way must not be far behind on this linear relation."""
    from crossalign.evaluate.closed_form import PairScorer
    from crossalign.evaluate.retrieval import retrieval_metrics
    from crossalign.evaluate.tuning import ViewData, tune_cca, tune_kcca

    rng = np.random.default_rng(0)
    z = rng.standard_normal((800, 16))
    a = z @ rng.standard_normal((16, 60)) + 0.5 * rng.standard_normal((800, 60))
    b = z @ rng.standard_normal((16, 40)) + 0.5 * rng.standard_normal((800, 40))
    va, vb = ViewData.fit(a[:600], a[600:700]), ViewData.fit(b[:600], b[600:700])
    score = PairScorer(None, 100)
    r_exact = retrieval_metrics(*(m(x) for m, x in zip(tune_cca(va, vb, score).maps, (a[700:], b[700:]))))["R@1"]
    r_kernel = retrieval_metrics(*(m(x) for m, x in zip(tune_kcca(va, vb, score).maps, (a[700:], b[700:]))))["R@1"]
    assert r_exact > 0.5 and r_kernel > 0.5 * r_exact
