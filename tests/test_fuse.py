"""Fusion modules, the fused model and the multi-task loss, on tiny dimensions (no encoders run)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from crossalign.align.model import AlignmentModel
from crossalign.config import HeadConfig, ModelConfig
from crossalign.data.features import ViewSpec
from crossalign.encoders import EncoderSpec
from crossalign.fuse.config import TaskConfig
from crossalign.fuse.data import IGNORE, PreparedTask, TaskData, derive
from crossalign.fuse.model import FusionModel
from crossalign.fuse.modules import FUSIONS, Stream, build_fusion, masked_mean
from crossalign.recipes.task import FusionTask
from crossalign.train.trainer import Trainer

B, D = 4, 16


def _streams(seed: int = 0) -> tuple[Stream, dict[str, Stream]]:
    g = torch.Generator().manual_seed(seed)
    qmask = torch.tensor([[1, 1, 1, 0, 0]] * B, dtype=torch.bool)
    q = Stream(torch.randn(B, 5, D, generator=g), qmask, torch.ones(B, dtype=torch.bool))
    img = Stream(torch.randn(B, 10, D, generator=g), torch.ones(B, 10, dtype=torch.bool), torch.ones(B, dtype=torch.bool))
    aud = Stream(torch.randn(B, 3, D, generator=g), torch.ones(B, 3, dtype=torch.bool), torch.ones(B, dtype=torch.bool))
    return q, {"image": img, "audio": aud}


@pytest.mark.parametrize("name", list(FUSIONS))
def test_fusion_shapes(name: str) -> None:
    torch.manual_seed(0)
    fus = build_fusion(name, D, ["query", "image", "audio"], heads=2, layers=1).eval()
    q, ctx = _streams()
    out = fus(q, ctx)
    assert out.tokens.shape == (B, 5, D) and out.pooled.shape == (B, D)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    if name == "cross-attention":
        # (B, heads, 1 + Tq, 1 + Tk): CLS + query tokens over the null key + 10 cells + 3 frames
        assert out.attention is not None and out.attention.shape == (B, 2, 6, 14)
        assert out.key_layout == [("image", 1, 11), ("audio", 11, 14)]
        torch.testing.assert_close(out.attention.sum(-1), torch.ones(B, 2, 6))
    if name == "gated":
        assert out.gates is not None and out.gates.shape == (B, 3)
        torch.testing.assert_close(out.gates.sum(-1), torch.ones(B))


@pytest.mark.parametrize("name", list(FUSIONS))
def test_missing_modality_is_ignored(name: str) -> None:
    """An absent modality must not influence the output, whatever its (garbage) features are."""
    torch.manual_seed(0)
    fus = build_fusion(name, D, ["query", "image", "audio"], heads=2, layers=1).eval()
    q, ctx = _streams()
    absent = torch.tensor([True, False, True, False])
    ctx["audio"] = Stream(ctx["audio"].tokens, ctx["audio"].mask, ~absent)
    a = fus(q, ctx)
    ctx2 = dict(ctx)
    garbage = torch.randn(ctx["audio"].tokens.shape, generator=torch.Generator().manual_seed(9)) * 5
    ctx2["audio"] = Stream(garbage, ctx["audio"].mask, ~absent)
    b = fus(q, ctx2)
    torch.testing.assert_close(a.pooled[absent], b.pooled[absent])
    torch.testing.assert_close(a.tokens[absent], b.tokens[absent])
    assert not torch.allclose(a.pooled[~absent], b.pooled[~absent])  # present items do depend on it
    if name == "cross-attention":
        s, e = {n: (s, e) for n, s, e in a.key_layout}["audio"]
        assert a.attention[absent][..., s:e].abs().max() == 0
    if name == "gated":
        assert a.gates[absent][:, 2].abs().max() == 0


@pytest.mark.parametrize("name", list(FUSIONS))
def test_all_context_missing_still_answers(name: str) -> None:
    fus = build_fusion(name, D, ["query", "image", "audio"], heads=2, layers=1).eval()
    q, ctx = _streams()
    none = torch.zeros(B, dtype=torch.bool)
    ctx = {k: Stream(s.tokens, s.mask, none) for k, s in ctx.items()}
    out = fus(q, ctx)
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()


def test_padding_tokens_do_not_leak() -> None:
    fus = build_fusion("cross-attention", D, ["query", "image"], heads=2, layers=2).eval()
    q, ctx = _streams()
    ctx.pop("audio")
    a = fus(q, ctx)
    q2 = Stream(torch.where(q.mask.unsqueeze(-1), q.tokens, torch.full_like(q.tokens, 50.0)), q.mask, q.present)
    b = fus(q2, ctx)
    torch.testing.assert_close(a.tokens[:, :3], b.tokens[:, :3])
    torch.testing.assert_close(a.pooled, b.pooled)


def test_masked_mean_reference() -> None:
    x = torch.arange(12.0).view(1, 4, 3)
    m = torch.tensor([[True, False, True, False]])
    torch.testing.assert_close(masked_mean(x, m), ((x[0, 0] + x[0, 2]) / 2).unsqueeze(0))
    assert masked_mean(x, torch.zeros_like(m)).abs().sum() == 0


def test_unknown_fusion_named() -> None:
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        build_fusion("sum", D, ["query"])


# ---- fused model over a small alignment model (real heads, tiny specs) ----

W, T_IMG = 6, 5
SPECS = {
    "text": EncoderSpec("text:minilm", "text", "t", (12,), True),
    "image": EncoderSpec("image:efficientnet-lite0", "image", "t", (20,), True),
    "text:tokens": EncoderSpec("text:minilm", "text", "t", (W, 12), True, options={"words": W}),
    "image:tokens": EncoderSpec("image:efficientnet-lite0", "image", "t", (T_IMG, 20), True),
}


def _align() -> AlignmentModel:
    cfg = ModelConfig(views=[ViewSpec("text"), ViewSpec("image")], dim=8, head=HeadConfig(hidden=16))
    return AlignmentModel(cfg, {c: SPECS[c] for c in ("text", "image")})


def _data(n: int, kind: str, seed: int = 0) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    feats = {"text": torch.randn(n, 12, generator=g), "image": torch.randn(n, 20, generator=g),
             "text:tokens": torch.randn(n, W, 12, generator=g), "image:tokens": torch.randn(n, T_IMG, 20, generator=g),
             "align:text": torch.randn(n, 12, generator=g)}
    lens = torch.randint(2, W + 1, (n,), generator=g)
    wm = torch.arange(W).unsqueeze(0) < lens.unsqueeze(1)
    if kind == "tag":
        # learnable signal: the tag is the sign of the word's first feature
        tg = (feats["text:tokens"][..., 0] > 0).long()
        tg[~wm] = IGNORE
    else:
        tg = (feats["image"][:, 0] > 0).long()
        sign = tg.float() * 2 - 1  # make the image signal strong and visible in the grid tokens too
        feats["image"][:, 0] = 3 * sign
        feats["image:tokens"][:, :, 0] = 3 * sign.unsqueeze(1)
    return TaskData(feats, wm, tg, torch.arange(n), [str(i) for i in range(n)], ["w " * int(k) for k in lens])


@pytest.mark.parametrize("kind", ["tag", "classify"])
@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_fused_model_heads(kind: str, fusion: str) -> None:
    torch.manual_seed(0)
    tok = {"text": SPECS["text:tokens"], "image": SPECS["image:tokens"]}
    m = FusionModel(_align(), ["text", "image"], tok, kind, 3, fusion, d=16, heads=2, layers=1).eval()
    d = _data(5, kind)
    m.fit_normalizers(d.feats, d.word_mask)
    # the alignment head takes a single 12-d / 20-d vector, so it is also applied token by token
    assert m.streams["text"].tokenwise and m.streams["image"].tokenwise
    res = m(d.feats, d.word_mask)
    assert res.logits.shape == ((5, W, 3) if kind == "tag" else (5, 3))
    gone = m(d.feats, d.word_mask, {"image": torch.zeros(5, dtype=torch.bool)})
    assert torch.isfinite(gone.logits).all()
    assert not torch.allclose(gone.logits, res.logits)
    no_text = m(d.feats, d.word_mask, {"text": torch.zeros(5, dtype=torch.bool)})
    assert torch.isfinite(no_text.logits).all()


def test_tagging_without_text_modality_uses_word_slots() -> None:
    tok = {"text": SPECS["text:tokens"], "image": SPECS["image:tokens"]}
    align = AlignmentModel(ModelConfig(views=[ViewSpec("image")], dim=8, head=HeadConfig(hidden=16)),
                           {"image": SPECS["image"]})
    m = FusionModel(align, ["image"], tok, "tag", 3, "cross-attention", d=16, heads=2, layers=1)
    d = _data(3, "tag")
    assert m(d.feats, d.word_mask).logits.shape == (3, W, 3)


def test_tokens_take_the_closed_form_linear_path_like_pooled_inputs() -> None:
    """A run whose winner holds a closed form (a linear path beside the head): each word goes through
    the same projection as a pooled input (head + linear path), not through the head alone."""
    from crossalign.fuse.model import StreamEncoder

    torch.manual_seed(0)
    cfg = ModelConfig(views=[ViewSpec("text"), ViewSpec("image")], dim=8, head=HeadConfig(hidden=16, linear_path=True))
    align = AlignmentModel(cfg, {c: SPECS[c] for c in ("text", "image")}).eval()
    with torch.no_grad():
        align.linear["text"].gate.fill_(0.3)
        align.linear["text"].linear.weight.normal_()
    enc = StreamEncoder("text", align, (W, 12), d=16, dropout=0.0, normalize_tokens=False)
    assert enc.tok_aligned is not None
    x = torch.randn(3, W, 12)
    got = enc.aligned_tokens(align, x)  # (3, W, 8)
    want = torch.stack([align.embed("text", x[:, t]) for t in range(W)], 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
    head_only = align.heads["text"](x.reshape(-1, 12)).view(3, W, -1)
    assert (got - head_only).abs().max() > 0.1  # the linear path counts


def _prep(kind: str, n: int = 48) -> PreparedTask:
    full = _data(n, kind)
    idx = torch.arange(n)
    splits = {"train": full.subset(idx[: n - 16]), "val": full.subset(idx[n - 16:]), "test": full.subset(idx[:0])}
    classes = ["neg", "pos"]
    return PreparedTask(kind, classes, ["text", "image"], {c: ViewSpec(c) for c in ("text", "image")},
                        {c: ViewSpec(c) for c in ("text", "image")}, SPECS, splits, None)  # type: ignore[arg-type]


def _task(kind: str, align_weight: float, prep: PreparedTask | None = None) -> FusionTask:
    torch.manual_seed(0)
    prep = prep or _prep(kind)
    tok = {"text": SPECS["text:tokens"], "image": SPECS["image:tokens"]}
    align = _align()
    m = FusionModel(align, prep.modalities, tok, kind, len(prep.classes), "cross-attention", d=16, heads=2, layers=1)
    m.fit_normalizers(prep.splits["train"].feats, prep.splits["train"].word_mask)
    cfg = TaskConfig(align_weight=align_weight, task_weight=2.0, modality_dropout=0.0, d=16, heads=2)
    return FusionTask(m, cfg, prep, prep.splits["train"], prep.splits["val"], align.cfg.pairs(), "infonce")


def test_width_trimming_matches_full_width() -> None:
    """Skipping all-padding word slots is an optimisation only: logits of real words are unchanged."""
    task = _task("tag", 0.0)
    m = task.model.eval()
    d = task.train.subset(torch.arange(6))
    wm = d.word_mask.clone()
    wm[:, 4:] = False  # no text in this batch is longer than 4 words
    short = m(d.feats, wm).logits
    assert short.shape == (6, W, 2) and short[:, 4:].abs().sum() == 0
    full_q = {**d.feats, "text:tokens": d.feats["text:tokens"][:, :4]}
    ref = m(full_q, wm[:, :4]).logits
    torch.testing.assert_close(short[:, :4], ref)


def test_multitask_loss_bookkeeping() -> None:
    task = _task("tag", align_weight=0.5)
    task.model.eval()  # no dropout: recompute the same numbers by hand
    idx = torch.arange(8)
    losses, _ = task.training_forward(idx)
    assert set(losses) == {"loss", "loss/task", "loss/align"}
    torch.testing.assert_close(losses["loss"], 2.0 * losses["loss/task"] + 0.5 * losses["loss/align"])
    d = task.train
    feats = {k: v[idx] for k, v in d.feats.items()}
    logits = task.model(feats, d.word_mask[idx]).logits
    ref = F.cross_entropy(logits.flatten(0, 1), d.targets[idx].flatten(), weight=task.class_weight, ignore_index=IGNORE)
    torch.testing.assert_close(losses["loss/task"], ref)
    # the alignment term uses `align:text` (the original caption) against the image, in-batch InfoNCE
    a = task.model.align
    zt, zi = a.embed("text", feats["align:text"]), a.embed("image", feats["image"])
    s = a.scale() * zt @ zi.T
    lbl = torch.arange(8)
    torch.testing.assert_close(losses["loss/align"], (F.cross_entropy(s, lbl) + F.cross_entropy(s.T, lbl)) / 2)
    assert math.isfinite(float(losses["loss"]))


def test_task_only_has_no_align_term() -> None:
    losses, _ = _task("classify", align_weight=0.0).training_forward(torch.arange(8))
    assert set(losses) == {"loss", "loss/task"}
    torch.testing.assert_close(losses["loss"], 2.0 * losses["loss/task"])


def test_modality_dropout_keeps_one() -> None:
    task = _task("classify", 0.5)
    task.cfg.modality_dropout = 0.9
    p = task._present(500)
    keep = torch.stack(list(p.values()), 1)
    assert keep.any(1).all() and (~keep).any()


@pytest.mark.parametrize("kind", ["tag", "classify"])
def test_fusion_task_learns_through_shared_trainer(kind: str, tmp_path: Path) -> None:
    prep = _prep(kind, n=64)
    task = _task(kind, 0.2, prep)
    before = task.validate()["macro_f1"]
    res = Trainer(task, tmp_path, epochs=8, batch_size=16, lr=3e-3, progress=False).fit(resume=False)
    assert (tmp_path / "best.safetensors").exists()
    assert res.best_metric > max(before, 0.6)
    assert "train/loss/align" in res.history[-1] and "val/macro_f1" in res.history[-1]


def test_derive_subsets() -> None:
    prep = _prep("tag", n=96)
    d = derive(prep, ["image"], 0.25, seed=1)
    assert d.modalities == ["image"] and len(d.splits["train"]) == 20
    assert derive(prep, None, 0.25, seed=1).splits["train"].ids == d.splits["train"].ids
    with pytest.raises(ValueError, match="were not prepared"):
        derive(prep, ["audio"])
