"""Trainer, save/load, resume and tuning on small generated scenes (evaluation: test_evaluate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import small_config
from safetensors.torch import load_file


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


def test_tune_writes_best_config(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.config import load_config
    from crossalign.recipes.tune import tune

    cfg = small_config(scenes_small, tmp_path / "t", epochs=1)
    cfg.model.views = [v for v in cfg.model.views if v.column in ("text", "audio")]
    summary = tune(cfg, trials=2, out=tmp_path / "tune", progress=False)
    assert len(summary["trials"]) == 2
    best = load_config(tmp_path / "tune" / "best.yaml")
    assert best.train.lr == pytest.approx(summary["best_params"]["lr"])


def test_warmup_cosine_schedule() -> None:
    """Linear warmup to 1 over `warmup` steps, then half a cosine to 0 at `total`, flat after."""
    import math

    from crossalign.train.schedule import warmup_cosine

    f = warmup_cosine(total_steps=10, warmup_steps=4)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))  # half way through the decay
    assert f(10) == pytest.approx(0.0, abs=1e-12) and f(25) == pytest.approx(0.0, abs=1e-12)
    vals = [f(s) for s in range(4, 11)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))  # never rises after warmup
    g = warmup_cosine(total_steps=3, warmup_steps=0)
    assert g(0) == 1.0 and g(3) == pytest.approx(0.0, abs=1e-12)
    h = warmup_cosine(total_steps=2, warmup_steps=2)  # all warmup: no division by zero after it
    assert h(1) == 1.0 and h(2) == 1.0 and h(3) == pytest.approx(0.0, abs=1e-12)
