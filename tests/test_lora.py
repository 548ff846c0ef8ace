"""LoRA / partial unfreezing of real pretrained towers: what trains, save/load, merge for export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crossalign.align.io import export_merged
from crossalign.align.lora import TowerTuning, apply_tuning, merge_tuning, trainable_summary
from crossalign.encoders import build_encoder

CAPTIONS = ["a red circle at the top left", "a blue square at the bottom", "two green stars"]


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    return build_encoder("text:minilm")


def test_lora_on_minilm_last_layers(minilm) -> None:  # type: ignore[no-untyped-def]
    base = minilm.encode(CAPTIONS)
    enc = apply_tuning(build_encoder("text:minilm"), {"method": "lora", "r": 4, "last_blocks": 2})
    names = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert {n.split("encoder.layer.")[1].split(".")[0] for n in names} == {"4", "5"}  # MiniLM has 6 layers
    assert any("query" in n for n in names) and any("value" in n for n in names)
    s = trainable_summary(enc)
    assert s["trainable"] < 0.01 * s["parameters"]
    torch.testing.assert_close(enc.encode(CAPTIONS), base)  # B starts at zero: same outputs
    out = enc(CAPTIONS)  # gradients reach the adapters only
    out.sum().backward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if p.requires_grad)
    assert all(p.grad is None for n, p in enc.named_parameters() if not p.requires_grad)
    with torch.no_grad():
        for n, p in enc.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    tuned = enc.encode(CAPTIONS)
    assert (tuned - base).abs().max() > 1e-3
    torch.testing.assert_close(merge_tuning(enc).encode(CAPTIONS), tuned, atol=1e-5, rtol=1e-4)
    assert not any("lora_" in n for n, _ in enc.named_parameters())


def test_unfreeze_and_lora_on_efficientnet_last_blocks() -> None:
    enc = apply_tuning(build_encoder("image:efficientnet-lite0", size=64), TowerTuning("unfreeze", last_blocks=2))
    names = {n.split(".")[1] + "." + n.split(".")[2] if n.startswith("net._blocks") else n.split(".")[1]
             for n, p in enc.named_parameters() if p.requires_grad}
    assert names == {"_blocks.14", "_blocks.15", "_conv_head", "_bn1"}
    enc.train()
    from PIL import Image

    enc([Image.new("RGB", (64, 64), (200, 30, 30))] * 2)
    assert not any(m.training for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d))  # frozen statistics

    lora = apply_tuning(build_encoder("image:efficientnet-lite0", size=64), {"method": "lora", "last_blocks": 1})
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ("_blocks.15." in n or "_conv_head" in n) for n in trainable)


def test_tuning_config_is_validated() -> None:
    from crossalign.config import ModelConfig

    with pytest.raises(ValueError, match="needs 'text' in train_towers"):
        ModelConfig(views=[{"column": "text"}], tower_tuning={"text": {"method": "lora"}})
    with pytest.raises(ValueError, match="lora or unfreeze"):
        ModelConfig(views=[{"column": "text"}], train_towers=["text"], tower_tuning={"text": {"method": "x"}})
    with pytest.raises(ValueError, match="not available"):
        apply_tuning(build_encoder("sensor:mlp", input_shape=[4]), {"method": "lora"})


def test_lora_run_saves_loads_and_exports_merged(tmp_path: Path) -> None:
    """A LoRA text tower trains inside a run, loads back bit-identically, and exports merged."""
    from crossalign.align.embedder import Embedder
    from crossalign.config import RunConfig
    from crossalign.data.manifest import write_manifest
    from crossalign.recipes.align import train

    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        arr = rng.normal(size=(6,)).astype(np.float32)
        arr[i % 6] += 3.0
        np.save(tmp_path / f"s{i}.npy", arr)
        rows.append({"id": str(i), "text": f"the signal peaks in channel {i % 6}", "sensor": f"s{i}.npy",
                     "group": str(i % 6), "split": "val" if i % 5 == 0 else "train"})
    write_manifest(rows, tmp_path / "manifest.jsonl")
    cfg = RunConfig.from_dict({
        "model": {"views": [{"column": "text"}, {"column": "sensor", "encoder": "sensor:mlp"}], "dim": 8,
                  "head": {"hidden": 16}, "train_towers": ["text"],
                  "tower_tuning": {"text": {"method": "lora", "r": 2, "last_blocks": 1}}},
        "train": {"data": str(tmp_path), "out": str(tmp_path / "run"), "epochs": 1, "batch_size": 16,
                  "progress": False, "tower_lr": 1e-2}})
    run, _ = train(cfg, resume=False)
    emb = Embedder.from_run(run)
    a = emb.embed("text", CAPTIONS)
    from safetensors.torch import load_file

    state = load_file(str(run / "model.safetensors"))
    lora_b = [k for k in state if "lora_B" in k]
    assert lora_b and any(state[k].abs().max() > 0 for k in lora_b)  # the adapters trained
    assert not any("lora_" in k and "layer.4" in k for k in state)  # only the last block is adapted
    merged = tmp_path / "merged"
    export_merged(run, merged)
    assert not any("lora_" in k for k in load_file(str(merged / "model.safetensors")))
    np.testing.assert_allclose(Embedder.from_run(merged).embed("text", CAPTIONS), a, atol=1e-5)
