"""Each objective against a plain, slow reference written here (loops, no vectorisation)."""

import math

import pytest
import torch
import torch.nn.functional as F

from crossalign.align.objectives import CosineEmbedding, InfoNCE, SigLIP, TriSigmoid, build_objective


def _emb(b=6, d=5, seed=0, views=("a", "b")):
    g = torch.Generator().manual_seed(seed)
    return {v: F.normalize(torch.randn(b, d, generator=g), dim=-1) for v in views}


def ref_infonce(a, b, scale, groups=None):
    n = len(a)
    pos = [[bool(groups[i] == groups[j]) if groups is not None else (i == j) for j in range(n)] for i in range(n)]
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            logits = [scale * float(x[i] @ y[j]) for j in range(n)]
            lse = math.log(sum(math.exp(v) for v in logits))
            npos = sum(pos[i])
            total += -sum((logits[j] - lse) / npos for j in range(n) if pos[i][j]) / n
    return total / 2


def ref_siglip(a, b, scale, bias, groups=None):
    n = len(a)
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            for j in range(n):
                same = (groups[i] == groups[j]) if groups is not None else (i == j)
                z = 1.0 if same else -1.0
                total += -math.log(1 / (1 + math.exp(-z * (scale * float(x[i] @ y[j]) + bias))))
    return total / (2 * n)


def ref_tri(i, t, s, scale, bias, negatives):
    n = len(i)
    total = 0.0
    for p in range(n):
        for q in range(n):
            if not negatives and p != q:
                continue
            sim = float(t[p] @ i[q]) + float(s[p] @ i[q])
            if negatives:
                z = scale * sim + bias
                lab = 1.0 if p == q else -1.0
                total += -math.log(1 / (1 + math.exp(-lab * z)))
            else:
                total += -math.log(1 / (1 + math.exp(-sim)))
    return total / n


@pytest.mark.parametrize("groups", [None, torch.tensor([0, 1, 1, 2, 3, 3])])
def test_infonce_matches_reference(groups):
    e = _emb()
    out = InfoNCE()(e, pairs=[("a", "b", 1.0)], groups=groups, logit_scale=torch.tensor(10.0))
    assert out["loss"].item() == pytest.approx(ref_infonce(e["a"], e["b"], 10.0, groups), rel=1e-5)
    assert set(out) == {"loss", "loss/a-b"}


@pytest.mark.parametrize("groups", [None, torch.tensor([0, 0, 1, 2, 2, 2])])
def test_siglip_matches_reference(groups):
    e = _emb(seed=1)
    out = SigLIP()(e, pairs=[("a", "b", 1.0)], groups=groups, logit_scale=torch.tensor(8.0),
                   logit_bias=torch.tensor(-3.0))
    assert out["loss"].item() == pytest.approx(ref_siglip(e["a"], e["b"], 8.0, -3.0, groups), rel=1e-5)


@pytest.mark.parametrize("negatives", [False, True])
def test_tri_sigmoid_matches_reference(negatives):
    e = _emb(seed=2, views=("image", "text", "audio"))
    out = TriSigmoid(negatives)(e, pairs=[("image", "text", 1.0), ("image", "audio", 1.0)],
                                logit_scale=torch.tensor(5.0), logit_bias=torch.tensor(-2.0))
    ref = ref_tri(e["image"], e["text"], e["audio"], 5.0, -2.0, negatives)
    assert out["loss"].item() == pytest.approx(ref, rel=1e-5)


def test_tri_sigmoid_plain_collapses_but_negative_aware_does_not():
    """All embeddings on one point minimise the plain objective; the negative-aware one punishes it."""
    b, d = 8, 4
    one = F.normalize(torch.ones(b, d), dim=-1)
    collapsed = {"image": one, "text": one, "audio": one}
    pts = F.normalize(torch.randn(b, d, generator=torch.Generator().manual_seed(0)), dim=-1)
    spread = {"image": pts, "text": pts, "audio": pts}  # perfectly aligned and spread out
    pairs = [("image", "text", 1.0), ("image", "audio", 1.0)]
    kw = dict(pairs=pairs, logit_scale=torch.tensor(10.0), logit_bias=torch.tensor(-5.0))
    plain = TriSigmoid(False)
    assert plain(collapsed, **kw)["loss"] <= plain(spread, **kw)["loss"] + 1e-6
    neg = TriSigmoid(True)
    assert neg(collapsed, **kw)["loss"] > neg(spread, **kw)["loss"]


def test_cosine_embedding_matches_reference():
    e = _emb(seed=3)
    a, b = e["a"], e["b"]
    out = CosineEmbedding(margin=0.2)(e, pairs=[("a", "b", 1.0)], logit_scale=torch.tensor(1.0))
    n = len(a)
    pos = sum(1 - float(a[i] @ b[i]) for i in range(n)) / n
    neg = sum(max(0.0, float(a[i] @ b[j]) - 0.2) for i in range(n) for j in range(n) if i != j) / (n * n - n)
    assert out["loss"].item() == pytest.approx(pos + neg, rel=1e-5)


def test_pair_weights_and_terms():
    e = _emb(views=("a", "b", "c"))
    pairs = [("a", "b", 1.0), ("a", "c", 3.0)]
    out = InfoNCE()(e, pairs=pairs, logit_scale=torch.tensor(5.0))
    expect = (out["loss/a-b"] + 3 * out["loss/a-c"]) / 4
    assert out["loss"].item() == pytest.approx(expect.item(), rel=1e-6)


def test_gradients_flow_and_registry():
    e = {k: v.clone().requires_grad_(True) for k, v in _emb().items()}
    for name in ("infonce", "siglip", "cosine"):
        loss = build_objective(name)(e, pairs=[("a", "b", 1.0)], logit_scale=torch.tensor(5.0),
                                     logit_bias=torch.tensor(-1.0))["loss"]
        (ga,) = torch.autograd.grad(loss, [e["a"]])
        assert torch.isfinite(ga).all() and ga.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown objective"):
        build_objective("nope")
