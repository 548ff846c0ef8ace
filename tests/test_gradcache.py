"""GradCache gives the gradients of the plain large batch, with a real trainable tower (MiniLM)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from numeric import assert_close_scaled

from crossalign.align.gradcache import chunk_slices, grad_cache_step
from crossalign.align.model import AlignmentModel
from crossalign.align.objectives import build_objective
from crossalign.config import ModelConfig
from crossalign.encoders import EncoderSpec

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star"]


def _captions(n: int) -> list[str]:
    return [f"a {COLOURS[i % 6]} {SHAPES[(i // 6) % 4]} at the {'top' if i % 2 else 'bottom'}" for i in range(n)]


def _model(text_tower: bool, dropout: float, objective: str = "infonce") -> AlignmentModel:
    torch.manual_seed(0)
    img = EncoderSpec("image:synthetic", "image", "1", (12,), trainable=False)
    cfg = ModelConfig(views=[{"column": "image"}, {"column": "text"}], dim=8, objective=objective,
                      head={"hidden": 16, "dropout": dropout}, train_towers=["text"] if text_tower else [])
    towers = {}
    if text_tower:
        from crossalign.encoders import build_encoder

        towers["text"] = build_encoder("text:minilm")
        specs = {"image": img, "text": towers["text"].spec}
    else:
        specs = {"image": img, "text": EncoderSpec("text:synthetic", "text", "1", (10,), trainable=False)}
    return AlignmentModel(cfg, specs, towers)


def _loss_fn(model: AlignmentModel, objective: str):  # type: ignore[no-untyped-def]
    obj = build_objective(objective)
    return lambda e: obj(e, pairs=[("image", "text", 1.0)], logit_scale=model.scale(), logit_bias=model.logit_bias)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("objective", ["infonce", pytest.param("siglip", marks=pytest.mark.slow)])
def test_gradcache_equals_plain_batch_with_trainable_minilm(objective: str) -> None:
    n = 16
    model = _model(text_tower=True, dropout=0.0, objective=objective)
    model.eval()  # no dropout anywhere, so plain and chunked forwards are the same function
    batch = {"image": torch.randn(n, 12, generator=torch.Generator().manual_seed(1)), "text": _captions(n)}
    loss_fn = _loss_fn(model, objective)

    plain = loss_fn(model(batch))
    plain["loss"].backward()
    ref = _grads(model)
    model.zero_grad(set_to_none=True)

    cached = grad_cache_step(model.embed, batch, loss_fn, chunk=5, module=model)
    got = _grads(model)
    assert float(cached["loss"]) == pytest.approx(float(plain["loss"]), rel=1e-5)
    assert not cached["loss"].requires_grad  # the trainer must not backward it again
    assert set(got) == set(ref) and any(k.startswith("towers.text") for k in got)
    top = max(float(v.abs().max()) for v in ref.values())
    for k in ref:
        assert_close_scaled(got[k], ref[k], rtol=1e-4, msg=f"gradient of {k}", floor=1e-2 * top)


def test_gradcache_replays_dropout_masks() -> None:
    """In train mode with dropout, step 3 must reuse step 1's masks: the gradients then equal those
    of the same chunked forward kept in one graph (same RNG consumption, one backward)."""
    n = 20
    model = _model(text_tower=False, dropout=0.5)
    model.train()
    g = torch.Generator().manual_seed(2)
    batch = {"image": torch.randn(n, 12, generator=g), "text": torch.randn(n, 10, generator=g)}
    loss_fn = _loss_fn(model, "infonce")

    torch.manual_seed(5)
    emb = {c: torch.cat([model.embed(c, x[sl]) for sl in chunk_slices(n, 6)]) for c, x in batch.items()}
    ref_loss = loss_fn(emb)
    ref_loss["loss"].backward()
    ref = _grads(model)
    model.zero_grad(set_to_none=True)

    torch.manual_seed(5)
    got_loss = grad_cache_step(model.embed, batch, loss_fn, chunk=6, module=model)
    assert float(got_loss["loss"]) == pytest.approx(float(ref_loss["loss"]), rel=1e-6)
    for k, v in _grads(model).items():
        torch.testing.assert_close(v, ref[k], msg=f"gradient of {k}")


def test_gradcache_training_run_equals_plain(tmp_path: Path) -> None:
    """The trainer path: `train.grad_cache_chunk` changes memory use, not the trained weights."""
    from safetensors.torch import load_file
    from test_distributed import run_config, synthetic_table

    from crossalign.align.distributed import SINGLE
    from crossalign.recipes.align import train

    weights = []
    for chunk in (0, 3):
        cfg = run_config(tmp_path / f"c{chunk}", "infonce")
        cfg.train.grad_cache_chunk = chunk
        run, _ = train(cfg, resume=False, table=synthetic_table(), dist=SINGLE)
        weights.append(load_file(str(run / "last.safetensors")))
    for k in weights[0]:
        assert_close_scaled(weights[1][k], weights[0][k], rtol=1e-4, msg=k)


def test_chunk_size_validated() -> None:
    with pytest.raises(ValueError, match="chunk size"):
        chunk_slices(10, 0)
