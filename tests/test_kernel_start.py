"""The kernel (Nyström RBF) closed-form start and the hybrid start (closed form for the frozen views,
from-scratch towers trained into its space)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_config
from numeric import assert_close_scaled


def _curved_table(n: int = 600, seed: int = 0):  # type: ignore[no-untyped-def]
    """Two frozen views of a 2-d latent on a circle-like curve: view a holds the latent linearly,
    view b holds sin/cos of three times its angle, so no linear map of b recovers a's latent while
    an RBF kernel on both does."""
    from crossalign.data.features import FeatureTable
    from crossalign.data.manifest import Manifest
    from crossalign.encoders import EncoderSpec

    rng = np.random.default_rng(seed)
    t = rng.uniform(-np.pi, np.pi, n)
    a = np.stack([np.cos(t), np.sin(t)], 1) @ rng.standard_normal((2, 20)) + 0.05 * rng.standard_normal((n, 20))
    b = np.stack([np.cos(3 * t), np.sin(3 * t), t / np.pi], 1) @ rng.standard_normal((3, 12))
    b = b + 0.05 * rng.standard_normal((n, 12))
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    rows = [{"id": f"r{i}", "split": str(split[i]), "sensor_a": "-", "sensor_b": "-"} for i in range(n)]
    specs = {c: EncoderSpec(name=f"synthetic:{c}", modality="sensor", version="1", output_shape=(d,), trainable=False)
             for c, d in (("sensor_a", 20), ("sensor_b", 12))}
    feats = {"sensor_a": a.astype(np.float32), "sensor_b": b.astype(np.float32)}
    return FeatureTable(Manifest(rows, None, Path.cwd()), np.arange(n), feats, specs, [])


def _config(out: Path, **train: object):  # type: ignore[no-untyped-def]
    from crossalign.config import RunConfig

    t = {"out": str(out), "epochs": 4, "progress": False, "seed": 0, "data": "unused"}
    t.update(train)
    return RunConfig.from_dict({"model": {"views": [{"column": "sensor_a", "encoder": "synthetic:sensor_a"},
                                                    {"column": "sensor_b", "encoder": "synthetic:sensor_b"}],
                                          "dim": 32, "head": {"linear_path": True}}, "train": t})


def test_kernel_closed_form_is_held_by_the_model_and_survives_save_load(tmp_path: Path) -> None:
    """Where the relation is curved, validation picks kernel CCA; a model whose linear paths carry
    the Nyström front embeds exactly as that kernel map does, also after save and load."""
    from crossalign.align.io import load_run, save_model
    from crossalign.evaluate.closed_form import KernelMap, l2
    from crossalign.recipes.align import _build
    from crossalign.train.start import apply_closed_form, fit_closed_form

    table = _curved_table()
    cfg = _config(tmp_path / "x")
    tr, va, te = table.split("train"), table.split("val"), table.split("test")
    model = _build(cfg, dict(table.specs), tr)
    cf = fit_closed_form(model, tr, va)
    linear = fit_closed_form(model, tr, va, kernel=False)
    assert cf is not None and linear is not None
    assert cf.method == "kcca", (cf.method, cf.val_score, linear.val_score)
    assert cf.val_score > linear.val_score + 0.05
    with pytest.raises(ValueError, match="head.kernel"):  # linear paths without the front cannot hold it
        apply_closed_form(model, cf)
    cfg.model.head.kernel = cf.kernel_shapes()
    model = _build(cfg, dict(table.specs), tr)
    apply_closed_form(model, cf)
    model.eval()
    for col in ("sensor_a", "sensor_b"):
        m = cf.maps[col]
        assert isinstance(m, KernelMap)
        x = torch.from_numpy(te.features[col])
        got = model.embed(col, x).detach()
        std = model.linear[col].norm(x.float()).numpy()
        ref = l2(np.pad(m(std), ((0, 0), (0, 32 - m.proj.shape[1]))))
        assert_close_scaled(got, torch.from_numpy(ref).float(), rtol=2e-3, msg=col)
    save_model(model, cfg, tmp_path / "run", "best")
    loaded, cfg2 = load_run(tmp_path / "run")
    assert cfg2.model.head.kernel == cf.kernel_shapes()
    for col in ("sensor_a", "sensor_b"):
        x = torch.from_numpy(te.features[col])
        assert_close_scaled(loaded.embed(col, x).detach(), model.embed(col, x).detach(), rtol=1e-5, msg=col)


def test_train_keeps_the_kernel_start_and_export_refuses_or_holds_it(tmp_path: Path) -> None:
    """`train` on curved data: the kernel start is the closed form, the winner is an ordinary run
    folder; sentence-transformers export refuses a kernel path with a reason, ONNX holds it."""
    from crossalign.align.io import load_run
    from crossalign.evaluate.run_eval import evaluate_model
    from crossalign.export.onnx import export_onnx
    from crossalign.export.st import st_supported
    from crossalign.recipes.align import train

    table = _curved_table()
    cfg = _config(tmp_path / "run", start="closed_form")
    cfg.model.head.linear_path = False  # train.start turns the linear paths on for its candidates
    run, _ = train(cfg, resume=False, table=table, progress=False)
    res = json.loads((run / "train_result.json").read_text())
    assert res["closed_form"]["method"] == "kcca"
    vals = {k: v["val_mean/R@1"] for k, v in res["candidates"].items()}
    assert set(vals) == {"closed_form", "fine_tuned"} and vals[res["winner"]] == max(vals.values())
    model, cfg_run = load_run(run)
    assert cfg_run.model.head.kernel == res["closed_form"]["kernel"]
    test = evaluate_model(model, cfg_run, table, "test").metrics["mean/R@1"]
    assert test >= vals["closed_form"] - 0.1  # the kept model generalises like the kernel start
    why = st_supported(model, "sensor_a")
    assert why is not None and "kernel" in why and "onnx" in why
    infos = export_onnx(model, tmp_path / "onnx")
    assert {i["file"] for i in infos} >= {"sensor_a.onnx", "sensor_b.onnx"}
    assert max(i["parity_max_abs_diff"] for i in infos) < 1e-3  # unit vectors: relative to their norm


def test_hybrid_start_fits_the_frozen_views_and_trains_the_radar_into_them(scenes_small: Path,
                                                                          tmp_path: Path) -> None:
    """Scenes with a from-scratch radar tower: the closed form covers image, text and audio only;
    the radar keeps its head; training moves the radar and nothing of the fitted views."""
    from crossalign.recipes.align import _build, prepare_features, train
    from crossalign.train.start import apply_closed_form, fit_closed_form, freeze_closed_form

    cfg = small_config(scenes_small, tmp_path / "run", epochs=2)
    cfg.model.head.linear_path = True
    table, encoders = prepare_features(cfg, progress=False)
    tr, va = table.split("train"), table.split("val")
    specs = {c: e.spec for c, e in encoders.items()}
    model = _build(cfg, specs, tr)
    cf = fit_closed_form(model, tr, va, kernel=False)
    assert cf is not None and cf.scratch == ["sensor"] and set(cf.maps) == {"image", "text", "audio"}
    apply_closed_form(model, cf)
    assert float(model.linear["sensor"].gate) == 1.0 and float(model.linear["image"].gate) == 0.0
    freeze_closed_form(model, cf)
    assert not any(p.requires_grad for p in model.heads["image"].parameters())
    assert all(p.requires_grad for p in model.towers["sensor"].parameters())

    run, _ = train(small_config(scenes_small, tmp_path / "auto", epochs=2), resume=False, table=table,
                   progress=False)
    res = json.loads((run / "train_result.json").read_text())
    assert res["closed_form"]["hybrid_scratch_views"] == ["sensor"]
    assert set(res["candidates"]) == {"scratch", "closed_form", "fine_tuned"}
