"""Per-word evidence from the aligned space (`TaskConfig.word_evidence`): the occlusion delta, the
fused model with it, bootstrap intervals, and one end-to-end run that trains and predicts (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossalign.align.model import AlignmentModel
from crossalign.config import HeadConfig, ModelConfig
from crossalign.data.features import ViewSpec
from crossalign.encoders import EncoderSpec
from crossalign.fuse.config import TaskConfig
from crossalign.fuse.evidence import evidence_key, occluded_texts, occlusion_delta
from crossalign.fuse.metrics import bootstrap_macro_f1, task_metrics
from crossalign.fuse.model import FusionModel
from tests.numeric import assert_close_scaled

W = 5
SPECS = {
    "text": EncoderSpec("text:minilm", "text", "t", (12,), True),
    "image": EncoderSpec("image:efficientnet-lite0", "image", "t", (20,), True),
    "text:tokens": EncoderSpec("text:minilm", "text", "t", (W, 12), True, options={"words": W}),
    "image:tokens": EncoderSpec("image:efficientnet-lite0", "image", "t", (3, 20), True),
}


def _align() -> AlignmentModel:
    torch.manual_seed(0)
    cfg = ModelConfig(views=[ViewSpec("text"), ViewSpec("image")], dim=8, head=HeadConfig(hidden=16))
    return AlignmentModel(cfg, {c: SPECS[c] for c in ("text", "image")}).eval()


def _feats(n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    feats = {"text": torch.randn(n, 12, generator=g), "image": torch.randn(n, 20, generator=g),
             "text:tokens": torch.randn(n, W, 12, generator=g), "image:tokens": torch.randn(n, 3, 20, generator=g),
             evidence_key("text"): torch.randn(n, W, 12, generator=g)}
    wm = torch.arange(W).unsqueeze(0) < torch.tensor([W, 3, 2, 4][:n]).unsqueeze(1)
    return feats, wm


def test_occluded_texts() -> None:
    assert occluded_texts("a red  circle", 8) == ["red circle", "a circle", "a red"]
    assert occluded_texts("a red circle", 2) == ["red circle", "a circle"]  # past the width: not tagged
    assert occluded_texts("circle", 4) == ["circle"] and occluded_texts("", 4) == []


def test_occlusion_delta_is_the_difference_of_two_direct_similarities() -> None:
    align = _align()
    feats, _ = _feats(4)
    with torch.no_grad():
        delta, s_full = occlusion_delta(align, "text", feats["text"], feats[evidence_key("text")], "image",
                                        feats["image"])
        zi = F.normalize(align.embed("image", feats["image"]), dim=-1)
        for i in range(4):
            full = float(F.normalize(align.embed("text", feats["text"][i:i + 1]), dim=-1)[0] @ zi[i])
            # cosines of unit vectors are at most 1 in size: 1e-4 of that scale absorbs float32 batched vs
            # single-row summation order on any CPU
            assert s_full[i] == pytest.approx(full, abs=1e-4)
            for j in range(W):
                deleted = float(F.normalize(align.embed("text", feats[evidence_key("text")][i, j:j + 1]), dim=-1)[0] @ zi[i])
                assert float(delta[i, j]) == pytest.approx(deleted - full, abs=1e-4)
    # a word-deleted text equal to the full text changes nothing
    same = feats["text"].unsqueeze(1).expand(-1, W, -1)
    with torch.no_grad():
        zero, _ = occlusion_delta(align, "text", feats["text"], same, "image", feats["image"])
    assert_close_scaled(zero, torch.zeros_like(zero), floor=1.0, rtol=1e-5)


def _model(**kw: object) -> FusionModel:
    tok = {"text": SPECS["text:tokens"], "image": SPECS["image:tokens"]}
    return FusionModel(_align(), ["text", "image"], tok, "tag", 3, "cross-attention", d=16, heads=2, layers=1,
                       **kw).eval()  # type: ignore[arg-type]


def test_fused_model_with_occlusion_evidence() -> None:
    feats, wm = _feats(4)
    m = _model(word_evidence="occlusion")
    assert m.evidence is not None and m.evidence.context == ["image"]
    m.fit_normalizers(feats, wm)
    out = m(feats, wm).logits
    assert out.shape == (4, W, 3) and torch.isfinite(out).all()
    # the evidence is read: other word-deleted texts change the tags' logits
    moved = m({**feats, evidence_key("text"): feats[evidence_key("text")].flip(0)}, wm).logits
    assert not torch.allclose(out[wm], moved[wm])
    # without the image there is nothing to compare a word with: the deleted texts no longer matter
    absent = {"image": torch.zeros(4, dtype=torch.bool)}
    a = m(feats, wm, absent).logits
    b = m({**feats, evidence_key("text"): torch.randn_like(feats[evidence_key("text")])}, wm, absent).logits
    assert_close_scaled(a, b, rtol=1e-5)
    ev = m.evidence(m.align, feats, wm, absent)
    assert ev.abs().max() == 0
    # nor without the text (its words carry no content then)
    no_text = {"text": torch.zeros(4, dtype=torch.bool)}
    a = m(feats, wm, no_text).logits
    b = m({**feats, evidence_key("text"): torch.randn_like(feats[evidence_key("text")])}, wm, no_text).logits
    assert_close_scaled(a, b, rtol=1e-5)


def test_occlusion_from_token_states_is_the_mean_of_the_other_words() -> None:
    feats, wm = _feats(4)
    m = _model(word_evidence="occlusion-tokens")
    assert m.evidence is not None and m.evidence.source == "tokens"
    full, rest = m.evidence._texts(feats, wm)
    st = feats["text:tokens"]
    for i in range(4):
        n = int(wm[i].sum())
        assert_close_scaled(full[i], F.normalize(st[i, :n].mean(0), dim=-1), msg="full text")
        for j in range(n):
            others = torch.cat([st[i, :j], st[i, j + 1:n]])
            assert_close_scaled(rest[i, j], F.normalize(others.mean(0), dim=-1), msg=f"text {i} without word {j}")
    m.fit_normalizers(feats, wm)
    assert torch.isfinite(m(feats, wm).logits).all()
    one = torch.zeros_like(wm)
    one[:, 0] = True  # one-word texts: nothing left after deleting it, so the text stays itself
    f1, r1 = m.evidence._texts(feats, one)
    assert_close_scaled(r1[:, 0], f1)


def test_occlusion_tokens_needs_matching_word_states() -> None:
    tok = {"text": EncoderSpec("text:minilm", "text", "t", (W, 7), True), "image": SPECS["image:tokens"]}
    with pytest.raises(ValueError, match="needs a token view whose feature size is the pooled view's"):
        FusionModel(_align(), ["text", "image"], tok, "tag", 3, d=16, heads=2, layers=1,
                    word_evidence="occlusion-tokens")
    # auto (the task default): occlusion-tokens where the word states fit, else a plain tagger
    plain = FusionModel(_align(), ["text", "image"], tok, "tag", 3, d=16, heads=2, layers=1, word_evidence="auto")
    assert plain.evidence is None
    assert _model(word_evidence="auto").evidence.source == "tokens"  # type: ignore[union-attr]
    assert TaskConfig().word_evidence == "auto"


def test_word_evidence_needs_context_and_a_known_name() -> None:
    tok = {"text": SPECS["text:tokens"]}
    align = AlignmentModel(ModelConfig(views=[ViewSpec("text")], dim=8, head=HeadConfig(hidden=16)),
                           {"text": SPECS["text"]})
    text_only = FusionModel(align, ["text"], tok, "tag", 3, d=16, heads=2, layers=1, word_evidence="occlusion")
    assert text_only.evidence is None  # nothing to compare the words with: a plain tagger
    with pytest.raises(ValueError, match="word_evidence must be one of none, occlusion, occlusion-tokens, auto"):
        _model(word_evidence="saliency")
    with pytest.raises(ValueError, match="word_evidence must be one of"):
        TaskConfig(word_evidence="saliency")


def test_bootstrap_macro_f1_matches_sklearn_and_pairs() -> None:
    rng = np.random.default_rng(0)
    n, w = 60, 7
    tg = rng.integers(0, 3, (n, w))
    wm = np.arange(w)[None] < rng.integers(2, w + 1, n)[:, None]
    tg[~wm] = -100
    good = np.where(rng.random((n, w)) < 0.8, tg, rng.integers(0, 3, (n, w)))
    bad = rng.integers(0, 3, (n, w))
    res = bootstrap_macro_f1(tg, {"good": good, "bad": bad}, 3, wm, reference="bad", n_boot=300)
    for k, p in (("good", good), ("bad", bad)):
        ref, _ = task_metrics("tag", ["O", "a", "b"], tg, p, wm)
        assert res[k]["macro_f1"] == pytest.approx(ref["macro_f1"], rel=1e-9)
        assert res[k]["lo"] <= res[k]["macro_f1"] <= res[k]["hi"]
    assert res["bad"]["diff"] == 0 and res["bad"]["diff_lo"] == 0 == res["bad"]["diff_hi"]
    assert res["good"]["diff_lo"] > 0  # 80 % right vs random: clearly better on every resample
    cls = bootstrap_macro_f1(tg[:, 0], {"x": good[:, 0]}, 3, n_boot=50)  # classification: one label per row
    assert cls["x"]["macro_f1"] == pytest.approx(task_metrics("classify", ["O", "a", "b"], tg[:, 0], good[:, 0])[0]["macro_f1"])


@pytest.mark.slow
def test_word_evidence_task_trains_and_predicts(scenes_small: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crossalign.cli import app
    from crossalign.fuse.data import prepare_task
    from crossalign.fuse.evaluate import predict_batches
    from crossalign.fuse.run import load_task_run, predict

    out = CliRunner().invoke(app, [
        "task", "train", "--task", str(_yaml(scenes_small, tmp_path)), "--word-evidence", "occlusion",
        "--out", str(tmp_path / "rc")])
    assert out.exit_code == 0, out.output
    assert "contradicted" in out.output and "without image" in out.output
    r = load_task_run(tmp_path / "rc")
    assert r.cfg.word_evidence == "occlusion" and r.model.evidence is not None
    # predict re-encodes the word-deleted texts itself: same tags as the cached features give
    prep = prepare_task(TaskConfig.from_dict(r.cfg.to_dict() | {"out": str(tmp_path / "again")}),
                        align_views=r.align_views, classes=r.classes)
    test = prep.splits["test"]
    cached = predict_batches(r.model, test, probs=True)
    rows = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "rc" / "task_manifest.jsonl").read_text().splitlines()}
    picked = [rows[i] for i in test.ids[:3]]
    preds = predict(r, {"text": [x["text"] for x in picked], "image": [x["image"] for x in picked]})
    for k, p in enumerate(preds):
        n = len(p.words)
        want = cached[k, :n]
        assert p.tags == [r.classes[int(j)] for j in want.argmax(-1)]
        assert_close_scaled(torch.tensor(p.tag_probs), torch.tensor(want.max(-1)), rtol=2e-3)


def _yaml(data: Path, tmp: Path) -> Path:
    p = tmp / "rc.yaml"
    p.write_text(f"task: report-consistency\ndata: {data}\nd: 32\nheads: 2\nlayers: 1\n"
                 "train: {epochs: 2, batch_size: 32, progress: false}\n"
                 "token_views:\n  text: {column: text, encoder: 'text:minilm', options: {words: 28}}\n"
                 "  image: {column: image, options: {size: 128, grid: 2, color: true}}\n")
    return p
