"""Semi-supervised alignment (semi/): OT pseudo-targets, ASIF, the SemiAlignmentTask through the
real Trainer, and the CLI paths. Zero-pair matching (GW, align-unpaired): test_unpaired.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_config
from numeric import assert_close_scaled
from safetensors.torch import load_file


def _text_audio(cfg):  # type: ignore[no-untyped-def]
    cfg.model.views = [v for v in cfg.model.views if v.column in ("text", "audio")]
    return cfg


def test_ot_pseudo_targets_find_planted_partners() -> None:
    """Unpaired items are noisy copies of random paired items (some copied often, some never):
    the soft targets' largest entry must point at the source item for >= 90 % of them."""
    from crossalign.semi.ot import pseudo_targets

    rng = np.random.default_rng(0)
    paired = rng.standard_normal((60, 32))
    source = rng.integers(0, 60, 300)
    unpaired = paired[source] + 0.5 * rng.standard_normal((300, 32))
    pt = pseudo_targets(unpaired, paired)
    assert pt.targets.shape == (300, 60)
    np.testing.assert_allclose(pt.targets.sum(1), 1.0, rtol=1e-5)
    assert (pt.targets.argmax(1) == source).mean() >= 0.9
    assert ((pt.confidence >= 0) & (pt.confidence <= 1)).all()
    idx, w = pt.top(4)
    assert (idx[:, :1] == idx[np.arange(300), w.argmax(1)][:, None]).all() and np.allclose(w.sum(1), 1.0)


def test_asif_relative_representations() -> None:
    """Anchors retrieve their own partners; ASIF is registered among the benchmark baselines."""
    from crossalign.evaluate.baselines import BASELINES, DEFAULT_METHODS
    from crossalign.evaluate.retrieval import retrieval_metrics
    from crossalign.evaluate.tuning import tune_asif
    from crossalign.semi.asif import RelativeRep, asif_fit

    assert BASELINES["asif"] is tune_asif and "asif" in DEFAULT_METHODS  # tuned on validation like the rest
    rng = np.random.default_rng(4)
    z = rng.standard_normal((120, 8))
    a, b = z @ rng.standard_normal((8, 30)), np.tanh(z @ rng.standard_normal((8, 16)))
    project = asif_fit(a[:100], b[:100], k=16)
    za, zb = project(a[100:], b[100:])
    assert za.shape == (20, 100) and np.allclose(np.linalg.norm(za, axis=1), 1.0, atol=1e-5)
    assert retrieval_metrics(za, zb)["R@1"] >= 0.5  # chance 0.05
    rr = RelativeRep(a[:100], k=5)
    assert ((rr(a[:10]) > 0).sum(1) <= 5).all()


def test_losses_zero_weight_is_exactly_zero() -> None:
    from crossalign.semi.losses import neighbourhood, soft_contrastive

    z = torch.nn.functional.normalize(torch.randn(6, 4, requires_grad=True), dim=1)
    c = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    t = torch.softmax(torch.randn(6, 5), 1)
    assert soft_contrastive(z, c, t, torch.zeros(6), torch.tensor(10.0)).item() == 0.0
    assert neighbourhood(torch.randn(6, 9), z, torch.zeros(6)).item() == 0.0
    assert neighbourhood(torch.randn(6, 9), z, torch.ones(6)).item() > 0.0


def test_paired_fraction_split(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.semi.data import UNPAIRED_SPLIT, paired_fraction
    from crossalign.recipes.align import prepare_features

    cfg = _text_audio(small_config(scenes_small, tmp_path / "r"))
    table, _ = prepare_features(cfg, progress=False)
    n_tr = len(table.split("train"))
    sd = paired_fraction(table, 0.25, seed=5, columns=["text", "audio"])
    assert len(sd.table.split("train")) == round(0.25 * n_tr)
    assert sd.unpaired.total() == n_tr - round(0.25 * n_tr) == len(sd.table.split(UNPAIRED_SPLIT))
    assert min(sd.unpaired.counts().values()) > 0  # both views keep some rows
    for s in ("val", "test"):
        assert (sd.table.split(s).rows == table.split(s).rows).all()
    again = paired_fraction(table, 0.25, seed=5, columns=["text", "audio"])
    assert (again.table.split("train").rows == sd.table.split("train").rows).all()
    assert table.manifest.rows[0].get("split") != UNPAIRED_SPLIT or True  # the source table is not modified
    assert all(r.get("split") != UNPAIRED_SPLIT for r in table.manifest.rows)


def test_partial_rows_and_unpaired_manifest(scenes_small: Path, tmp_path: Path) -> None:
    """Training rows without audio become unpaired text items (not errors); an --unpaired manifest
    adds items; a corrupt file is still reported as a problem."""
    from crossalign.data.manifest import load_manifest, write_manifest
    from crossalign.recipes.semi import prepare_semi
    from crossalign.semi.config import SemiConfig

    m = load_manifest(scenes_small)
    rows = [dict(r) for r in m.rows]
    train_idx = [i for i, r in enumerate(rows) if r["split"] == "train"]
    for i in train_idx[:10]:
        rows[i].pop("audio")
    rows[train_idx[10]]["audio"] = "missing.wav"
    for r in rows:
        for k in ("audio", "image", "sensor"):
            if r.get(k):
                r[k] = str((scenes_small / r[k]).resolve())
    write_manifest(rows, tmp_path / "partial.jsonl")
    write_manifest([{"text": "a small red circle at the top"}, {"audio": rows[train_idx[-1]]["audio"]}], tmp_path / "extra.jsonl")
    cfg = _text_audio(small_config(tmp_path / "partial.jsonl", tmp_path / "r"))
    data = prepare_semi(cfg, SemiConfig(unpaired=[str(tmp_path / "extra.jsonl")]), progress=False)
    assert len(data.table.split("train")) == len(train_idx) - 11
    assert data.unpaired.counts() == {"text": 11 + 1, "audio": 1}
    assert [p.column for p in data.table.problems] == ["audio"]  # the corrupt one, not the absent ones


def test_semi_with_no_unpaired_equals_supervised(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.recipes.semi import prepare_semi, train_semi
    from crossalign.semi.config import SemiConfig
    from crossalign.recipes.align import train

    cfg = _text_audio(small_config(scenes_small, tmp_path / "sup", epochs=2))
    semi = SemiConfig(method="pseudo-pairs", start=0, unimodal=0.5)
    data = prepare_semi(cfg, semi, progress=False)
    assert data.unpaired.total() == 0
    train(cfg, resume=False, table=data.table, progress=False)
    cfg2 = _text_audio(small_config(scenes_small, tmp_path / "semi", epochs=2))
    run, _ = train_semi(cfg2, semi, data=data, resume=False, progress=False)
    a, b = load_file(str(tmp_path / "sup" / "last.safetensors")), load_file(str(run / "last.safetensors"))
    for k in a:
        assert_close_scaled(b[k], a[k], rtol=1e-6, msg=k)
    assert json.loads((run / "semi.json").read_text())["unpaired_items"] == {"text": 0, "audio": 0}


def _task(scenes_small: Path, tmp_path: Path, method: str, fraction: float = 0.5, **kw):  # type: ignore[no-untyped-def]
    from crossalign.align.io import build_towers
    from crossalign.align.model import AlignmentModel
    from crossalign.recipes.semi import prepare_semi
    from crossalign.semi.config import SemiConfig
    from crossalign.train.semi_task import SemiAlignmentTask

    cfg = _text_audio(small_config(scenes_small, tmp_path / "t"))
    semi = SemiConfig(method=method, paired_fraction=fraction, start=0, **kw)
    data = prepare_semi(cfg, semi, progress=False)
    tr, va = data.table.split("train"), data.table.split("val")
    torch.manual_seed(0)
    specs = data.table.specs
    model = AlignmentModel(cfg.model, specs, build_towers(cfg, specs))
    task = SemiAlignmentTask(model, cfg, tr, va, unpaired=data.unpaired, semi=semi)
    return task, semi


def test_zero_confidence_disables_unpaired_term(scenes_small: Path, tmp_path: Path) -> None:
    task, _ = _task(scenes_small, tmp_path, "pseudo-pairs")
    task.on_epoch_start(0)
    assert task.state and task.U > 0
    idx = torch.arange(task.num_train())[-24:]  # a few paired rows and many unpaired items
    task.model.eval()

    def run(fn):  # type: ignore[no-untyped-def]
        task.model.zero_grad(set_to_none=True)
        loss = fn()["loss"]
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in task.model.named_parameters() if p.grad is not None}

    with_term, _g_with = run(lambda: task.training_forward(idx)[0])
    for c in task.cols:
        task.state[f"pp/{c}/conf"] = torch.zeros_like(task.state[f"pp/{c}/conf"])
    off, g_off = run(lambda: task.training_forward(idx)[0])
    pidx = _paired_part(task, idx)
    sup, g_sup = run(lambda: task.base.training_forward(pidx)[0])
    assert with_term != sup
    assert torch.equal(off, sup)
    assert g_off.keys() == g_sup.keys() or set(g_sup) <= set(g_off)
    for n, g in g_sup.items():
        assert torch.equal(g_off[n], g), n
    for n in set(g_off) - set(g_sup):
        assert not g_off[n].any(), n


def _paired_part(task, idx):  # type: ignore[no-untyped-def]
    """The paired rows the task uses for this batch (same top-up rule as training_forward)."""
    captured = {}
    real = task.base.training_forward

    def spy(p):  # type: ignore[no-untyped-def]
        captured["p"] = p
        return real(p)

    task.base.training_forward = spy
    try:
        task.training_forward(idx)
    finally:
        task.base.training_forward = real
    return captured["p"]


@pytest.mark.parametrize("method", ["pseudo-pairs", "self-training"])
def test_semi_training_runs_and_resumes(scenes_small: Path, tmp_path: Path, method: str) -> None:
    """Both methods train through the Trainer; a run interrupted after 2 epochs resumes to the same
    weights as an uninterrupted one (pseudo-targets are saved beside each checkpoint)."""
    from crossalign.recipes.semi import prepare_semi, train_semi
    from crossalign.semi.config import SemiConfig

    semi = SemiConfig(method=method, paired_fraction=0.5, start=1, refresh=2, unimodal=0.1, precision=0.5)
    cfg = _text_audio(small_config(scenes_small, tmp_path / "a", epochs=4))
    data = prepare_semi(cfg, semi, progress=False)
    run_a, _res = train_semi(cfg, semi, data=data, resume=False, progress=False)
    hist = [json.loads(x) for x in (run_a / "metrics.jsonl").read_text().splitlines()]
    assert len(hist) == 4 and "train/loss/unimodal" in hist[-1]
    if method == "pseudo-pairs":
        assert "train/loss/unpaired" in hist[-1]
        assert (run_a / "last.semi.safetensors").exists()
    cfg_b = _text_audio(small_config(scenes_small, tmp_path / "b", epochs=4))
    train_semi(cfg_b, semi, data=data, resume=False, progress=False, stop_after=2)
    train_semi(cfg_b, semi, data=data, resume=True, progress=False)
    a, b = load_file(str(run_a / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    for k in a:
        assert_close_scaled(b[k], a[k], rtol=1e-5, msg=k)


def test_cli_train_benchmark_and_align_unpaired(scenes_small: Path, tmp_path: Path) -> None:
    """`train/benchmark --paired-fraction --semi` and `align-unpaired` through typer; a bad seed
    file is a clear error naming the file and row."""
    import yaml
    from typer.testing import CliRunner

    from crossalign.cli import app
    from crossalign.data.manifest import load_manifest, write_manifest

    runner = CliRunner()
    cfg = {"model": {"views": [{"column": "text"}, {"column": "audio"}], "dim": 32, "head": {"hidden": 64}},
           "train": {"data": str(scenes_small), "out": str(tmp_path / "run"), "epochs": 2, "batch_size": 32,
                     "progress": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--paired-fraction", "0.5", "--semi", "self-training"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "semi.json").read_text())["method"] == "self-training"
    assert "test R@1" in r.output
    r = runner.invoke(app, ["benchmark", str(tmp_path / "c.yaml"), "--paired-fraction", "0.5", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert {"crossalign+pseudo-pairs", "asif", "cca"} <= set(json.loads((tmp_path / "b" / "benchmark.json").read_text()))
    r = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--paired-fraction", "1.5"])
    assert r.exit_code != 0 and "paired fraction" in r.output

    m = load_manifest(scenes_small)
    rows = [r for r in m.rows if r["split"] == "train"][:40]
    write_manifest([{"id": r["id"], "text": r["text"]} for r in rows], tmp_path / "a.jsonl")
    write_manifest([{"id": r["id"], "audio": str((scenes_small / r["audio"]).resolve())} for r in rows[::-1]],
                   tmp_path / "b.jsonl")
    write_manifest([{"a": rows[i]["id"], "b": rows[i]["id"]} for i in range(3)], tmp_path / "seeds.jsonl")
    out = tmp_path / "un"
    r = runner.invoke(app, ["align-unpaired", "--data", str(tmp_path / "a.jsonl"), "--data", str(tmp_path / "b.jsonl"),
                            "--seeds", str(tmp_path / "seeds.jsonl"), "--ids-match", "--dim", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "unpaired.json").read_text())
    assert rep["seeds"] == 3 and rep["n_a"] == 40 and 0 <= rep["gw_recovered"] <= 1
    matches = [json.loads(x) for x in (out / "matches.jsonl").read_text().splitlines()]
    assert len(matches) == 40 and {x["a"] for x in matches} == {r["id"] for r in rows}
    assert (out / "map.safetensors").exists()
    write_manifest([{"a": "no-such-id", "b": rows[0]["id"]}], tmp_path / "bad.jsonl")
    r = runner.invoke(app, ["align-unpaired", "--data", str(tmp_path / "a.jsonl"), "--data", str(tmp_path / "b.jsonl"),
                            "--seeds", str(tmp_path / "bad.jsonl"), "--out", str(out)])
    flat = re.sub(r"[\s│]", "", r.output)  # typer's error box wraps long paths across lines
    assert r.exit_code != 0 and "bad.jsonl" in flat and "row1" in flat and "no-such-id" in flat
