"""Projection heads (align/heads.py): standardisation, shapes, token handling, the linear path."""

from __future__ import annotations

import torch
from numeric import assert_close_scaled

from crossalign.align.heads import LinearPath, ProjectionHead, Standardize
from crossalign.config import HeadConfig


def test_standardize_fits_train_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1e-3, 1.0, 10.0, 100.0, 5.0, 0.0])  # the last feature is constant
    x = torch.randn(500, 6, generator=g) * scale + torch.tensor([0.0, 7.0, -3.0, 50.0, 1.0, 7.0])
    s = Standardize((6,))
    s.fit(x)
    z = s(x)
    assert torch.isfinite(z).all()  # the constant feature's std is clamped, not divided by zero
    assert_close_scaled(z[:, :5].mean(0), torch.zeros(5), rtol=1e-4, floor=1.0)
    assert_close_scaled(z[:, :5].std(0), torch.ones(5), rtol=1e-4)
    assert torch.equal(z[:, 5], torch.zeros(500))
    assert set(dict(s.named_buffers())) == {"mean", "std"}  # saved with the run's state dict


def test_projection_head_shapes_and_unit_norm() -> None:
    torch.manual_seed(0)
    cfg = HeadConfig(hidden=16, depth=2, dropout=0.0)
    head = ProjectionHead((12,), 8, cfg).eval()
    z = head(torch.randn(5, 12))
    assert z.shape == (5, 8)
    assert_close_scaled(z.norm(dim=-1), torch.ones(5), rtol=1e-5)
    linears = [m for m in head.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 16), (16, 16), (16, 8)]
    lin = ProjectionHead((12,), 8, HeadConfig(kind="linear"))
    assert isinstance(lin.net, torch.nn.Linear) and (lin.net.in_features, lin.net.out_features) == (12, 8)


def test_token_heads_flatten_keeps_order_mean_ignores_it() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, 10)  # (B, T, D)
    perm = x[:, [2, 0, 3, 1]]
    flat = ProjectionHead((4, 10), 8, HeadConfig(hidden=16, dropout=0.0, token_dim=5)).eval()
    assert (flat.token_proj.in_features, flat.token_proj.out_features) == (10, 5)
    assert flat.net[0].in_features == 4 * 5
    assert flat(x).shape == (3, 8) and not torch.allclose(flat(x), flat(perm))
    raw = ProjectionHead((4, 10), 8, HeadConfig(hidden=16, dropout=0.0, token_dim=0))
    assert isinstance(raw.token_proj, torch.nn.Identity) and raw.net[0].in_features == 40
    mean = ProjectionHead((4, 10), 8, HeadConfig(hidden=16, dropout=0.0, tokens="mean")).eval()
    assert mean.net[0].in_features == 10
    assert_close_scaled(mean(x), mean(perm), rtol=1e-5)


def test_linear_path_is_standardised_flattened_linear_map() -> None:
    torch.manual_seed(0)
    path = LinearPath((3, 4), 6)
    x = torch.randn(20, 3, 4) * 3 + 1
    path.norm.fit(x)
    want = ((x - x.mean(0)) / x.std(0)).flatten(1) @ path.linear.weight.T + path.linear.bias  # (B, dim)
    assert_close_scaled(path(x), want, rtol=1e-5)
    assert path.gate.item() == 1.0 and path.gate.requires_grad
