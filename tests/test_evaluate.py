"""Evaluation: the evaluator contract and registry, every evaluator's metrics on reference inputs,
`evaluate_run` on a trained run, baselines and the benchmark, and the run's pictures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config


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
    from crossalign.recipes.align import prepare_features
    from crossalign.recipes.benchmark import benchmark

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


def test_zero_shot_reference() -> None:
    """Two classes, one prompt each: item 3 is closer to the wrong prompt."""
    from crossalign.evaluate.classify import zero_shot

    prompts = np.array([[1.0, 0.0], [0.0, 1.0]])
    query = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.7, 0.3]])
    m = zero_shot(query, ["a", "a", "b", "b"], prompts, ["a", "b"])
    assert m["zeroshot_acc"] == pytest.approx(3 / 4)
    assert m["zeroshot_bal_acc"] == pytest.approx((1.0 + 0.5) / 2)  # per-class recall, averaged
    # a class with no test rows does not count towards the balanced accuracy
    m = zero_shot(query[:2], ["a", "a"], prompts, ["a", "b"])
    assert m == {"zeroshot_acc": 1.0, "zeroshot_bal_acc": 1.0}


def test_hard_negative_and_diagnostics_reference() -> None:
    from crossalign.evaluate.classify import hard_negative
    from crossalign.evaluate.diagnostics import alignment, modality_gap, space_diagnostics, uniformity

    q = np.eye(3)
    pos, neg = np.eye(3), np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # row 1 and 2: ties
    m = hard_negative(q, pos, neg, ["color", "shape", None])
    assert m == {"hardneg_acc": pytest.approx(1 / 3), "hardneg_acc/color": 1.0, "hardneg_acc/shape": 0.0}
    assert alignment(q, q) == 0.0 and modality_gap(q, q) == 0.0
    assert alignment(q, -q) == pytest.approx(4.0)  # squared distance of opposite unit vectors
    # orthogonal unit vectors are all sqrt(2) apart: log exp(-2 * 2)
    assert uniformity(q) == pytest.approx(-4.0)
    assert set(space_diagnostics({"a": q, "b": pos})) == {"a/uniformity", "b/uniformity", "a-b/alignment", "a-b/gap"}


def test_registry_builds_evaluators_that_follow_the_protocol(tiny_run: Path) -> None:
    from crossalign.align.io import load_run
    from crossalign.evaluate.evaluators import Evaluator
    from crossalign.evaluate.plugins import DEFAULT_EVALUATORS, EVALUATORS, EvalSetup, build_evaluators
    from crossalign.evaluate.run_eval import load_table

    model, cfg = load_run(tiny_run)
    table = load_table(cfg)
    setup = EvalSetup(model, cfg, table, table.split("train"))
    built = build_evaluators(setup)
    assert list(built) == list(DEFAULT_EVALUATORS) and set(DEFAULT_EVALUATORS) <= set(EVALUATORS)
    for name, ev in built.items():
        assert isinstance(ev, Evaluator), name
        assert isinstance(ev.primary, str) and ev.primary and isinstance(ev.greater_is_better, bool), name
    with pytest.raises(ValueError, match="unknown evaluator"):
        build_evaluators(setup, ["retrieval", "bleu"])
    with pytest.raises(ValueError, match="evaluator 'retrieval'"):
        build_evaluators(setup, ["retrieval"], {"retrieval": {"k": 3}})
    with pytest.raises(ValueError, match="not in the list"):
        build_evaluators(setup, ["retrieval"], {"zeroshot": {"prompts": None}})


def test_evaluate_model_runs_the_named_evaluators_only(tiny_run: Path) -> None:
    """A subset of the list gives exactly that subset of the full run's metrics, same values; every
    evaluator's primary metric is among its keys."""
    from crossalign.align.io import load_run
    from crossalign.evaluate.plugins import DEFAULT_EVALUATORS, EvalSetup, build_evaluators
    from crossalign.evaluate.run_eval import evaluate_model, load_table

    model, cfg = load_run(tiny_run)
    table = load_table(cfg)
    full = evaluate_model(model, cfg, table, "test")
    labels = {str(x) for x in table.meta("label")}
    assert set(full.prompts["prompts"]) == labels and full.prompts["column"] == "text"
    only = evaluate_model(model, cfg, table, "test", evaluators=["retrieval", "probe"])
    keys = [k for k in full.metrics if "->" in k or k.startswith("mean/") or k.endswith("/probe_acc")] + ["n_test"]
    assert only.metrics == pytest.approx({k: full.metrics[k] for k in keys}, nan_ok=True)
    assert only.prompts == {}  # no zero-shot, no prompts
    test = table.split("test")
    built = build_evaluators(EvalSetup(model, cfg, table, table.split("train")), DEFAULT_EVALUATORS)
    for name, ev in built.items():
        out = ev(full.embeddings, test)
        assert any(k == ev.primary or k.endswith("/" + ev.primary) for k in out), (name, ev.primary)


def test_run_pictures_are_decodable_pngs(tiny_run: Path, tmp_path: Path) -> None:
    """plot_run writes curves, similarity and gallery pictures: real PNGs with more than one colour."""
    from PIL import Image

    from crossalign.align.io import load_run
    from crossalign.evaluate.plots import plot_run, plot_similarity
    from crossalign.evaluate.run_eval import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    res = evaluate_run(run, split="test")
    model, _ = load_run(run)
    files = plot_run(run, res.embeddings, res.table, model.specs)
    assert sorted(p.name for p in files) == ["curves.png", "gallery.png", "similarity.png"]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 4))
    files.append(plot_similarity(a, a, tmp_path / "sim.png", ("a", "b")))
    for p in files:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p
        with Image.open(p) as im:
            im.load()
            assert im.width > 100 and im.height > 100, p
            lo, hi = im.convert("L").getextrema()
            assert hi - lo > 50, p  # not a blank canvas


def test_eval_cli_runs_the_named_evaluators_including_a_registered_one(tiny_run: Path, tmp_path: Path) -> None:
    """`crossalign eval --evaluators` picks from the registry; a plug-in's evaluator is one more name."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from crossalign.cli import app
    from crossalign.evaluate.plugins import register_evaluator, unregister_evaluator
    from crossalign.evaluate.retrieval import ranks

    class MedianRank:
        primary, greater_is_better = "median_rank", False

        def __call__(self, emb: dict, table: object = None) -> dict[str, float]:
            a, b = list(emb)[:2]
            return {f"{a}->{b}/median_rank": float(np.median(ranks(emb[a], emb[b])))}

    register_evaluator("medrank", lambda setup: MedianRank())
    try:
        r = CliRunner().invoke(app, ["eval", str(tiny_run), "--out", str(tmp_path / "a"),
                                     "--evaluators", "retrieval,medrank"])
        assert r.exit_code == 0, r.output
        m = json.loads((tmp_path / "a" / "metrics.json").read_text())
        assert any(k.endswith("/median_rank") for k in m) and "mean/R@1" in m
        assert not any("zeroshot" in k or "probe" in k for k in m)  # only what was named
        bad = CliRunner().invoke(app, ["eval", str(tiny_run), "--out", str(tmp_path / "b"), "--evaluators", "bleu"])
        assert bad.exit_code == 2 and "unknown" in bad.output and "medrank" in bad.output
    finally:
        unregister_evaluator("medrank")


def test_curves_of_a_run_that_validates_a_loss(tmp_path: Path) -> None:
    """A bridge logs `val/*loss`, not R@1: the right panel shows those losses (no empty panel, no warning)."""
    import json
    import warnings

    from PIL import Image

    from crossalign.evaluate.plots import plot_curves

    recs = [{"epoch": e, "train/loss": 1.0 / (e + 1), "val/caption_loss": 0.3 + e / 10, "val/mean_loss": 0.2}
            for e in range(3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a legend has nothing to show
        out = plot_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png")
    assert Image.open(out).size[0] > 500
