"""Tower tuning from cached activations (`tune_last`, encoders/top.py): the cached path equals the
whole tower, training moves only the top blocks (and heads), and a run folder round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numeric import assert_close_scaled
from PIL import Image

from crossalign.encoders import build_encoder
from crossalign.encoders.top import cache_bytes, is_lower_spec

TEXTS = ["a large red circle in the centre", "two small blue squares at the top left and a green triangle", "x"]


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)) for _ in range(n)]


def _perturb_top(enc: torch.nn.Module) -> None:
    """Move every trainable weight, so 'same output' cannot come from the pretrained weights alone."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in enc.parameters():
            if p.requires_grad:
                p.add_(0.05 * p.abs().mean() * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("name,opts,raw", [
    ("text:minilm", {"tune_last": 2}, TEXTS),
    ("image:efficientnet-lite0", {"tune_last": 2, "grid": 2, "color": True, "size": 96}, _images()),
])
@pytest.mark.parametrize("storage,rtol", [("float32", 1e-4), ("float16", 2e-2)])
def test_cached_path_equals_whole_tower(name: str, opts: dict, raw: list, storage: str, rtol: float) -> None:
    enc = build_encoder(name, storage=storage, **opts)
    _perturb_top(enc)
    full = enc.encode(raw)  # the whole tower in one go, with the moved top
    spec = enc.cache_spec
    assert is_lower_spec(spec) and spec.caches_inputs and enc.spec.caches_inputs
    act = enc.preprocess(raw).numpy().astype(np.float16 if storage == "float16" else np.float32)  # as cached
    assert act.shape[1:] == tuple(spec.output_shape)
    with torch.no_grad():
        cached = enc.eval()(torch.from_numpy(act.astype(np.float32)))
    assert cached.shape == full.shape == (len(raw), *enc.spec.output_shape)
    assert_close_scaled(cached, full, rtol, f"{name} {storage}")
    assert cache_bytes(spec) == int(np.prod(spec.output_shape)) * (2 if storage == "float16" else 4)


def test_tune_last_options_are_checked() -> None:
    with pytest.raises(ValueError, match="tune_last=7"):
        build_encoder("text:minilm", tune_last=7)
    with pytest.raises(ValueError, match="storage"):
        build_encoder("text:minilm", tune_last=1, storage="int8")
    with pytest.raises(ValueError, match="tokens"):
        build_encoder("text:minilm", tune_last=1, tokens=True)
    plain = build_encoder("text:minilm")  # no tune_last: the spec (and cache key) of every older run
    assert plain.cache_spec is plain.spec and "tune_last" not in plain.spec.options


def _config(data: Path, out: Path, epochs: int = 2):
    from crossalign.config import RunConfig

    return RunConfig.from_dict({
        "model": {"views": [{"column": "image", "options": {"grid": 2, "color": True, "size": 96, "tune_last": 1}},
                            {"column": "text", "options": {"tune_last": 1}}], "dim": 32, "head": {"hidden": 64}},
        "train": {"data": str(data), "out": str(out), "epochs": epochs, "batch_size": 32, "progress": False,
                  "patience": 0, "start": "scratch", "tower_lr": 1e-3}})


def test_training_moves_only_the_top_and_the_run_round_trips(scenes_small: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from crossalign.align.embed import embed_table
    from crossalign.align.embedder import Embedder
    from crossalign.align.io import build_towers, load_run
    from crossalign.evaluate.run_eval import load_table
    from crossalign.recipes.align import prepare_features, train

    cfg = _config(scenes_small, tmp_path / "run")
    table, encoders = prepare_features(cfg, progress=False)
    assert table.features["text"].shape[1:] == (32, 385)  # hidden states after layer 5 + mask
    assert all(is_lower_spec(s) for s in table.specs.values())
    before = {c: {k: v.clone() for k, v in e.state_dict().items()} for c, e in
              build_towers(cfg, {c: e.spec for c, e in encoders.items()}).items()}
    run, res = train(cfg, resume=False, table=table)
    assert res.epochs_run == 2
    weights = load_file(str(run / "best.safetensors"))
    top = {"text": "model.encoder.layer.5.", "image": ("net._blocks.15.", "net._conv_head.", "net._bn1.")}
    for col, sd in before.items():
        # the run folder carries the tuned top only; the frozen lower part is the packaged tower
        saved = {k for k in sd if f"towers.{col}.{k}" in weights}
        assert saved and all(k.startswith(top[col]) for k in saved), col
        moved = [k for k in saved if not torch.equal(weights[f"towers.{col}.{k}"], sd[k])]
        assert moved, f"{col}: no tower weight moved"
        # batch-norm statistics of the tuned image blocks stay the ImageNet ones
        assert not any(k.endswith(("running_mean", "running_var")) for k in moved), col

    model, cfg2 = load_run(run)
    assert model.specs["text"].tune_last == 1 and "text" in model.towers
    for col, sd in before.items():  # loaded: the saved top over the rebuilt pretrained tower
        got = model.towers[col].state_dict()
        assert all(torch.equal(got[k], weights.get(f"towers.{col}.{k}", v)) for k, v in sd.items()), col
    emb = embed_table(model, load_table(cfg2).split("test"))  # eval/index path: from the cache
    test = load_table(cfg2).split("test")
    rows = [test.manifest.rows[int(i)] for i in test.rows[:4]]
    e = Embedder.from_run(run)  # serving path: the whole tower with the tuned top
    for col in ("text", "image"):
        new = e.embed(col, [r[col] for r in rows], base_dir=test.manifest.base_dir)
        assert_close_scaled(torch.from_numpy(new), torch.from_numpy(emb[col][:4]), 2e-2, col)
    # a new item, never cached, embeds as a unit vector
    z = e.embed("text", ["a tiny purple star at the bottom right"])
    assert z.shape == (1, model.out_dim) and abs(float(np.linalg.norm(z)) - 1.0) < 1e-4  # 32, + CSLS if chosen


def test_lora_on_the_cached_top() -> None:
    """LoRA adapters on the tuned top (tune_last + tower_tuning): only adapters train, and the cached
    path still equals the whole tower; adapters cannot reach below the cached split."""
    from crossalign.align.io import build_towers
    from crossalign.config import RunConfig

    views = [{"column": "text", "encoder": "text:minilm", "options": {"tune_last": 1, "storage": "float32"}},
             {"column": "image", "encoder": "image:efficientnet-lite0", "options": {"size": 64}}]
    cfg = RunConfig.from_dict({"model": {"views": views, "train_towers": ["text"],
                                         "tower_tuning": {"text": {"method": "lora", "r": 4, "last_blocks": 1}}}})
    enc = build_encoder("text:minilm", tune_last=1, storage="float32")
    tower = build_towers(cfg, {"text": enc.spec, "image": build_encoder("image:efficientnet-lite0", size=64).spec})["text"]
    names = [n for n, p in tower.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and "layer.5." in n for n in names)
    _perturb_top(tower)  # moves the adapters (B starts at zero: otherwise a no-op)
    full = tower.encode(TEXTS)
    with torch.no_grad():
        cached = tower.eval()(tower.preprocess(TEXTS))
    assert_close_scaled(cached, full, 1e-4, "lora top")
    cfg.model.tower_tuning["text"]["last_blocks"] = 2
    with pytest.raises(ValueError, match="reaches below"):
        build_towers(cfg, {"text": enc.spec})


def test_closed_form_start_on_a_tuned_top(scenes_small: Path, tmp_path: Path) -> None:
    """A tuned top starts at the closed form fitted on its untuned outputs (the frozen features), so
    `train.start: closed_form` holds that solution before training moves the top."""
    from crossalign.align.embed import embed_table
    from crossalign.recipes.align import _build, _spec_for, prepare_features
    from crossalign.train.start import apply_closed_form, fit_closed_form

    cfg = _config(scenes_small, tmp_path / "run")
    cfg.model.head.linear_path = True
    table, _ = prepare_features(cfg, progress=False)
    tr, va = table.split("train"), table.split("val")
    model = _build(cfg, {v.column: _spec_for(v, table) for v in cfg.model.views}, tr)
    assert set(model.linear) == {"image", "text"} and not model.reads_input("text")
    cf = fit_closed_form(model, tr, va)
    assert cf is not None
    apply_closed_form(model, cf)
    emb = embed_table(model, va)  # the model is the closed form on the towers' (untuned) outputs
    za, zb = cf.maps["image"], cf.maps["text"]
    src = {c: model.linear[c].norm(model.linear_source(c, torch.from_numpy(va.features[c]))).flatten(1).numpy()
           for c in ("image", "text")}
    for c, m in (("image", za), ("text", zb)):
        ref = torch.nn.functional.normalize(torch.from_numpy(np.asarray(m(src[c]), dtype=np.float32)), dim=-1)
        assert_close_scaled(torch.from_numpy(emb[c]), ref, 1e-3, c)
