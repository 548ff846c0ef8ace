"""Bridge QA scoring per question type, the intervals every figure carries, and the slot prefix.

The slot projector is built on a tiny word-level Llama (see test_bridge.make_tiny_lm) and trained
end to end through the real `train_bridge` on a real run's features.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from crossalign.bridge.metrics import (CaptionQAEvaluator, bootstrap_interval, paired_bootstrap_diff,
                                       wilson_interval)
from crossalign.datasets.scenes.qa import QUESTION_TYPES, answer_question, question_type, scene_questions
from crossalign.datasets.scenes.scene import caption_en, sample_scene
from numeric import assert_close_scaled
from test_bridge import _objs, make_tiny_lm


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


def test_wilson_interval_known_values() -> None:
    # Wilson (1927) 95 % intervals; reference values from the closed form worked by hand
    assert_close_scaled(torch.tensor(wilson_interval(5, 10)), torch.tensor([0.2366, 0.7634]), rtol=1e-3)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and abs(hi - 0.2775) < 1e-3 * 0.2775
    lo, hi = wilson_interval(200, 200)
    assert hi == 1.0 and 0.98 < lo < 0.99
    assert all(np.isnan(wilson_interval(0, 0)))


def test_bootstrap_interval_covers_mean_and_narrows() -> None:
    rng = np.random.default_rng(1)
    small, big = rng.random(50), rng.random(2000)
    lo, hi = bootstrap_interval(small)
    assert lo < small.mean() < hi
    blo, bhi = bootstrap_interval(big)
    assert (bhi - blo) < (hi - lo) / 3  # width ~ 1/sqrt(n)
    assert bootstrap_interval(np.full(30, 0.7)) == (pytest.approx(0.7), pytest.approx(0.7))
    d = paired_bootstrap_diff(big + 0.1, big)
    assert_close_scaled(torch.tensor([d["diff"], d["lo"], d["hi"]]), torch.tensor([0.1, 0.1, 0.1]), rtol=1e-6)
    assert d["p_not_above"] == 0.0


def test_every_generated_question_has_a_type_and_lone_objects_are_asked_plainly() -> None:
    rng = random.Random(0)
    seen = set()
    for _ in range(200):
        objs = _objs(sample_scene(rng))
        for q, a in scene_questions(objs):
            seen.add(question_type(q))
            assert question_type(q) in QUESTION_TYPES and answer_question(objs, q) == a, q
    assert seen == set(QUESTION_TYPES)
    lone = [{"shape": "circle", "color": "red", "size": "large", "cell": [1, 1]}]
    assert ("What colour is the shape?", "red") in scene_questions(lone)
    assert answer_question(lone + lone, "What colour is the shape?") == ""  # two objects: no lone answer
    assert question_type("Tell me a story") == ""


def test_evaluator_scores_qa_per_type_with_intervals() -> None:
    objs = [{"shape": "circle", "color": "red", "size": "large", "cell": [1, 1]}]
    qs = ["What colour is the shape?", "How many shapes are there?", "Where is the shape?", "What shape is it?"]
    gold = ["red", "one", "center", "circle"]
    ev = CaptionQAEvaluator([objs], ["a large red circle in the center"], gold, qs)
    m, ci, n, rows = ev.details(["a large red circle in the center"], ["Red.", "1", "top left", "circle"])
    assert m["qa/exact"] == 0.75 and m["qa/color"] == 1.0 and m["qa/count"] == 1.0 and m["qa/position"] == 0.0
    assert "qa/size" not in m  # no size question was asked
    assert n["qa/exact"] == 4 and n["qa/color"] == 1 and n["attr/mean"] == 1
    assert ci["qa/position"][0] == 0.0 and 0 < ci["qa/position"][1] < 1
    assert m["attr/mean"] == 1.0 and rows["attr/mean"].shape == (1,)


def test_slot_projector_spells_objects_in_lm_words(tiny_lm: str) -> None:
    from crossalign.bridge.lm import load_lm
    from crossalign.bridge.slots import SLOT_FIELDS, SlotProjector, fit_slot_heads, slot_targets, slot_word_embeddings

    lm = load_lm(tiny_lm)
    words = slot_word_embeddings(lm.model.get_input_embeddings(), lm.tokenizer)
    proj = SlotProjector(16, lm.hidden, words, slots=3, free=2, hidden=64)
    out = proj(torch.randn(5, 16))
    assert out.shape == (5, 3 * len(SLOT_FIELDS) + 2, lm.hidden) == (5, proj.k, lm.hidden)  # (B, k, H)
    rng = random.Random(0)
    scenes = [_objs(sample_scene(rng)) for _ in range(400)]
    t = slot_targets(scenes, 3)
    assert t.shape == (400, 3, 1 + len(SLOT_FIELDS))
    assert (t[:, :, 0].sum(1) == [len(s) for s in scenes]).all()
    # an embedding that carries the scene (a noisy one-hot code of the targets) is learnable per slot
    code = np.concatenate([np.eye(10)[np.clip(t[:, :, f], 0, 9)].reshape(400, -1) for f in range(t.shape[2])], 1)
    z = (code + 0.05 * np.random.default_rng(0).normal(size=code.shape)).astype(np.float32)  # (400, 180)
    fitted = SlotProjector(z.shape[1], lm.hidden, words, slots=3, free=2, hidden=64)
    acc = fit_slot_heads(fitted, z[:300], t[:300], z[300:], t[300:], epochs=60, lr=3e-3)
    assert acc["present"] > 0.95 and acc["color"] > 0.8 and acc["row"] > 0.8, acc
    # a confident absent slot is the LM's word " none"; a confident present one its attribute words
    with torch.no_grad():
        proj.heads.weight.zero_()
        b = torch.full((3, 1 + sum(proj.sizes)), -30.0)
        b[0, 0] = 30.0  # slot 0 present, slots 1-2 absent
        b[0, 1 + 1] = 30.0  # size index 1: "large"
        proj.heads.bias.copy_(b.flatten())
        proj.eval()
        p = proj(torch.zeros(1, 16))[0]
    assert_close_scaled(p[0], words["size"][1], rtol=1e-4)
    assert_close_scaled(p[len(SLOT_FIELDS)], words["none"][0], rtol=1e-4)


def test_slot_bridge_trains_saves_and_answers(tiny_run: Path, scenes_small: Path, tiny_lm: str, tmp_path: Path) -> None:
    from crossalign.bridge import Bridge, BridgeConfig, evaluate_bridge, format_table
    from crossalign.recipes.bridge import train_bridge

    cfg = BridgeConfig(lm=tiny_lm, projector="slots", free_tokens=2, hidden=64, slot_epochs=20, qa_per_row=2,
                       train={"epochs": 2, "batch_size": 8, "lr": 1e-2}, val_rows=6, max_new_tokens=12,
                       autocast_bf16=False, system="answer about the input")
    folder, res = train_bridge(tiny_run, scenes_small, tmp_path / "b", cfg, progress=False)
    meta = json.loads((folder / "bridge.json").read_text())
    assert meta["projector"] == "slots" and 0.0 <= meta["stats"]["slot_heads_val"]["present"] <= 1.0
    # the attribute heads pre-train on every view of the run by default; the LM steps on train_columns
    assert meta["stats"]["head_columns"] == ["image", "text", "audio", "sensor"], meta["stats"]
    assert meta["stats"]["columns"] == ["image"]
    hist = res["stage1"].history
    assert "train/aux_loss" in hist[0] or any("aux_loss" in k for k in hist[0]), hist[0]
    b1, b2 = Bridge.load(folder), Bridge.load(folder)
    z = np.random.default_rng(0).normal(size=(2, meta["dim"])).astype(np.float32)
    assert b1.generate(z) == b2.generate(z)  # weights and word buffers round-trip
    out = evaluate_bridge(folder, scenes_small, limit=8, columns=["image", "audio"], bridge=b1, progress=False)
    assert out["n"]["bridge/image"]["qa/count"] == 8  # every row is asked how many shapes
    assert out["qa_pairs"] >= 8 * 3  # one question of each type the scene allows
    lo, hi = out["intervals"]["bridge/image"]["attr/mean"]
    assert lo <= out["systems"]["bridge/image"]["attr/mean"] <= hi
    assert set(out["vs_retrieval"]) == {"image", "audio"}
    table = format_table(out)
    assert "qa/position" in table and "bridge - retrieval, image" in table


def test_head_columns_must_be_views_of_the_run(tiny_run: Path, scenes_small: Path, tiny_lm: str,
                                                tmp_path: Path) -> None:
    from crossalign.bridge import BridgeConfig
    from crossalign.recipes.bridge import train_bridge

    cfg = BridgeConfig(lm=tiny_lm, projector="slots", head_columns=["image", "speech"])
    with pytest.raises(ValueError, match=r"head_columns \['speech'\] are not views of run"):
        train_bridge(tiny_run, scenes_small, tmp_path / "b", cfg, progress=False)
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_bridge_recipe_follows_the_data(scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.recipes.bridge import bridge_config_for

    cfg, name = bridge_config_for(scenes_small, {"train": {}})
    assert name == "slots" and cfg.projector == "slots" and cfg.lora_r == 16 and cfg.cache_layers == 22
    assert cfg.train.epochs == 3 and cfg.max_rows == 640 and cfg.head_columns == []  # [] = every view
    cfg, name = bridge_config_for(scenes_small, {"max_rows": 8, "train": {"epochs": 1}})
    assert (name, cfg.max_rows, cfg.train.epochs, cfg.train.batch_size) == ("slots", 8, 1, 8)
    cfg, name = bridge_config_for(scenes_small, {"projector": "mlp", "train": {}})  # not the recipe's projector
    assert (name, cfg.lora_r, cfg.cache_layers, cfg.max_rows) == ("defaults", 0, 0, 320)
    cfg, name = bridge_config_for(scenes_small, {"lm": "hf:other", "train": {}})  # 22 layers is SmolLM2's
    assert name == "slots" and cfg.cache_layers == 0 and cfg.lora_r == 16
    captions = tmp_path / "captions.jsonl"  # rows without `objects`: captions only, LLaVA-style MLP
    captions.write_text('{"id": "a", "image": "a.png", "text": "a red circle", "split": "train"}\n')
    cfg, name = bridge_config_for(captions, {"train": {}})
    assert (name, cfg.projector, cfg.tasks) == ("caption", "mlp", ["caption"])


def test_cli_trains_the_slots_recipe_by_default(tiny_run: Path, scenes_small: Path, tiny_lm: str,
                                                tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crossalign.cli import app

    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["bridge", "train", str(tiny_run), "--data", str(scenes_small), "--out", str(out),
                                   "--lm", tiny_lm, "--cache-layers", "1", "--max-rows", "8", "--epochs", "1",
                                   "--slot-epochs", "3", "--val-rows", "4"])
    assert res.exit_code == 0, res.output
    assert "bridge recipe: slots" in res.output
    meta = json.loads((out / "bridge.json").read_text())
    assert (meta["projector"], meta["lora_r"], meta["cache_layers"], meta["free_tokens"]) == ("slots", 16, 1, 0)
    assert meta["stats"]["head_columns"] == ["image", "text", "audio", "sensor"]


def test_per_example_loss_weighs_short_answers_like_captions(tiny_lm: str) -> None:
    from crossalign.bridge.lm import load_lm
    from crossalign.bridge.sequence import ChatFormat, build_batch, prefix_loss

    lm = load_lm(tiny_lm)
    fmt, emb = ChatFormat(lm.tokenizer, "answer about the input"), lm.model.get_input_embeddings()
    prefix = torch.randn(2, 3, lm.hidden)
    prompts, answers = ["describe this .", "how many shapes are there ?"], ["a small red circle at the top left", "one"]

    def loss(rows: list[int], per_example: bool) -> torch.Tensor:
        x, m, p, lab = build_batch(emb, fmt, prefix[rows], [prompts[r] for r in rows], [answers[r] for r in rows])
        with torch.no_grad():
            return prefix_loss(lm.model, x, m, p, lab, per_example=per_example)

    both, single = loss([0, 1], True), torch.stack([loss([0], True), loss([1], True)])
    assert_close_scaled(both, single.mean(), rtol=1e-4, msg="mean of per-example means")
    assert_close_scaled(loss([1], True), loss([1], False), rtol=1e-5, msg="one example: the token mean")
    assert abs(float(loss([0, 1], False)) - float(both)) > 1e-3 * float(both)  # the token mean differs
