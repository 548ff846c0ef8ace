"""Bridge training from cached bottom-layer activations (`cache_layers`, bridge/cached.py).

Checked against the plain path on a tiny randomly initialised Llama (see test_bridge.make_tiny_lm):
the split forward equals the decoder's own, the cached loss equals the full-LM loss, and a real
`train_bridge` run trains only the adapters above the cache and saves a bridge that loads back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from numeric import assert_close_scaled
from test_bridge import make_tiny_lm


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


def _batch(lm, fmt, n_prefix: int = 3):  # type: ignore[no-untyped-def]
    from crossalign.bridge.sequence import build_batch

    torch.manual_seed(1)
    prefix = torch.randn(2, n_prefix, lm.hidden)
    # different lengths: the shorter row is right-padded
    return build_batch(lm.model.get_input_embeddings(), fmt, prefix, ["describe this .", "how many shapes are there ?"],
                       ["a small red circle at the top left and a large blue star in the center", "one"])


def test_split_layers_equal_the_decoder_forward(tiny_lm: str) -> None:
    from crossalign.bridge.cached import num_layers, run_layers
    from crossalign.bridge.lm import load_lm
    from crossalign.bridge.sequence import ChatFormat

    lm = load_lm(tiny_lm)
    x, mask, pos, _ = _batch(lm, ChatFormat(lm.tokenizer, "answer about the input"))
    assert num_layers(lm.model) == 2
    with torch.no_grad():
        ref = lm.model.get_decoder()(inputs_embeds=x, attention_mask=mask, position_ids=pos).last_hidden_state
        whole = run_layers(lm.model, x, mask, pos, 0, None, final_norm=True)
        split = run_layers(lm.model, run_layers(lm.model, x, mask, pos, 0, 1), mask, pos, 1, None, final_norm=True)
    real = mask.bool()  # padded positions are never read
    assert_close_scaled(whole[real], ref[real], rtol=1e-5, msg="all layers")
    assert_close_scaled(split[real], ref[real], rtol=1e-5, msg="bottom layer, then the rest")


def test_cached_loss_equals_full_lm_loss_and_only_top_adapters_train(tiny_lm: str) -> None:
    from crossalign.bridge import BridgeConfig
    from crossalign.bridge.lm import load_lm
    from crossalign.bridge.model import Bridge
    from crossalign.bridge.prompts import Example
    from crossalign.bridge.task import BridgeTask

    cfg = BridgeConfig(lm=tiny_lm, projector="slots", free_tokens=0, hidden=32, lora_r=4, cache_layers=1,
                       autocast_bf16=False, system="answer about the input")
    b = Bridge.new(cfg, 8, lm=load_lm(tiny_lm))
    b.enable_lora()
    exs = [Example(0, "caption", "describe this .", "a small red circle at the top left"),
           Example(1, "qa", "how many shapes are there ?", "two"),
           Example(2, "qa", "what colour is the shape ?", "red")]
    z = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    task = BridgeTask(b, exs, z, exs[:2], z)
    assert len(task.cache["train"]) == 3 and task.cache["train"].nbytes() > 0
    with torch.no_grad():  # LoRA starts as the identity (B = 0): cached and full forward agree
        full = b.loss(torch.from_numpy(z), [e.prompt for e in exs], [e.answer for e in exs])
        cached = task._loss("train", [0, 1, 2])
    assert_close_scaled(cached, full, rtol=1e-5, msg="cached bottom layer + top layer = whole LM")
    trained = {n for g in task.param_groups() for p in g["params"] for n, q in b.lm.model.named_parameters() if q is p}
    assert trained and all(".layers.1." in n and "lora_" in n for n in trained), sorted(trained)
    assert not any(p.requires_grad for p in b.projector.parameters())  # frozen: its prefix is what was cached


def test_cache_layers_needs_slots_and_lora() -> None:
    from crossalign.bridge import BridgeConfig

    with pytest.raises(ValueError, match="cache_layers needs projector 'slots'"):
        BridgeConfig(projector="mlp", lora_r=8, cache_layers=2)
    with pytest.raises(ValueError, match="lora_r > 0"):
        BridgeConfig(projector="slots", cache_layers=2)
    with pytest.raises(ValueError, match="cache_layers >= 0"):
        BridgeConfig(cache_layers=-1)


def test_cached_bridge_trains_saves_and_loads(tiny_run: Path, scenes_small: Path, tiny_lm: str, tmp_path: Path) -> None:
    from crossalign.bridge import Bridge, BridgeConfig
    from crossalign.recipes.bridge import train_bridge

    cfg = BridgeConfig(lm=tiny_lm, projector="slots", free_tokens=0, hidden=64, slot_epochs=10, qa_per_row=1,
                       lora_r=4, cache_layers=1, lora_lr=3e-2, train={"epochs": 4, "batch_size": 8, "lr": 3e-2},
                       val_rows=6, max_new_tokens=8, autocast_bf16=False, system="answer about the input")
    folder, res = train_bridge(tiny_run, scenes_small, tmp_path / "b", cfg, progress=False)
    assert set(res) == {"stage1"}  # adapters train from the first step; no second stage
    hist = res["stage1"].history
    assert hist[-1]["train/loss"] < hist[0]["train/loss"], [h["train/loss"] for h in hist]
    meta = json.loads((folder / "bridge.json").read_text())
    assert meta["cache_layers"] == 1 and (folder / "lora.safetensors").exists()
    b1, b2 = Bridge.load(folder), Bridge.load(folder)
    assert b1.lora and all(".layers.1." in n for n, _ in b1.lm.model.named_parameters() if "lora_" in n)
    z = np.random.default_rng(0).normal(size=(2, meta["dim"])).astype(np.float32)
    assert b1.generate(z) == b2.generate(z)
