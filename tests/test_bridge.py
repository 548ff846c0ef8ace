"""Language-model bridge: metrics, prompts, chat sequences, KV-cached decoding, training and use.

A tiny randomly initialised Llama with a word-level tokenizer is built in the test and loaded
through the real `hf:<folder>` path; one slow test runs the packaged SmolLM2 end to end.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from crossalign.bridge.metrics import corpus_bleu, qa_exact_match
from crossalign.datasets.scenes.captions import attribute_scores, parse_caption
from crossalign.datasets.scenes.qa import answer_question, normalize_answer, scene_questions
from crossalign.datasets.scenes.scene import COLORS, POSITIONS, SHAPES, SIZES, caption_en, sample_scene

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def _objs(scene) -> list[dict]:  # type: ignore[no-untyped-def]
    return [{"shape": o.shape, "color": o.color, "size": o.size, "cell": list(o.cell)} for o in scene]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


def make_tiny_lm(folder: Path) -> str:
    """`hf:<folder>` of a 2-layer Llama (hidden 32) and a word-level ChatML tokenizer.

    Embeddings start large (initializer_range 0.5): a default-initialised tiny LM barely reacts to
    any input, so no prefix could change its output and nothing would be learnable."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    words = " ".join([*COLORS, *SHAPES, *SIZES, *POSITIONS.values(), "a an the at on in and , . ? how many shapes are",
                      "there what colour is shape object where or one two three describe this answer about input",
                      "system user assistant you are helpful assistant"])
    vocab = {t: i for i, t in enumerate(special + sorted(set(re.findall(r"\w+|[^\w\s]", words))))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, initializer_range=0.5, eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<pad>"])
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return f"hf:{folder}"


# ---- metrics and prompts ------------------------------------------------------------------
def test_parse_caption_reads_every_generated_caption_back() -> None:
    rng = random.Random(0)
    scenes = [sample_scene(rng) for _ in range(200)]
    caps = [caption_en(s) for s in scenes]
    assert attribute_scores(caps, [_objs(s) for s in scenes])["attr/scene"] == 1.0
    p = parse_caption("a large red circle at the top left, a small blue star in the center and a small green square on the right")
    assert p == [{"shape": "circle", "color": "red", "size": "large", "position": "top left"},
                 {"shape": "star", "color": "blue", "size": "small", "position": "center"},
                 {"shape": "square", "color": "green", "size": "small", "position": "right"}]


def test_attribute_scores_partial_credit() -> None:
    truth = [[{"shape": "circle", "color": "red", "size": "large", "cell": [0, 0]},
              {"shape": "star", "color": "blue", "size": "small", "cell": [1, 1]}]]
    s = attribute_scores(["a large green circle at the top left"], truth)
    assert s["attr/color"] == 0.0 and s["attr/count"] == 0.0 and s["attr/scene"] == 0.0
    assert s["attr/shape"] == pytest.approx(2 / 3)  # precision 1, recall 1/2
    assert s["attr/mean"] == pytest.approx((0 + 2 / 3 + 2 / 3 + 2 / 3 + 0) / 5)


def test_bleu_and_exact_match() -> None:
    ref = "a small red circle at the top left and a large blue star in the center"
    assert corpus_bleu([ref], [ref]) == pytest.approx(1.0)
    assert corpus_bleu(["purple"], [ref]) == 0.0
    mid = corpus_bleu(["a small red circle at the top left"], [ref])
    assert 0.0 < mid < 1.0  # precise but short: brevity penalty
    assert qa_exact_match(["Two.", "the Red", "3"], ["two", "red", "three"]) == 1.0
    assert normalize_answer("At the top left!") == "top left"


def test_questions_unambiguous_and_answerable() -> None:
    rng = random.Random(1)
    for _ in range(100):
        objs = _objs(sample_scene(rng))
        qa = scene_questions(objs)
        assert qa[0][1] in ("one", "two", "three")
        for q, a in qa:
            assert answer_question(objs, q) == a, q
    two_large = [{"shape": "circle", "color": "red", "size": "large", "cell": [0, 0]},
                 {"shape": "star", "color": "blue", "size": "large", "cell": [1, 1]}]
    assert "What colour is the large shape?" not in [q for q, _ in scene_questions(two_large)]
    assert answer_question(two_large, "What colour is the large shape?") == ""


# ---- sequences and decoding ----------------------------------------------------------------
def test_chat_sequence_places_prefix_before_prompt_and_labels_only_answer(tiny_lm: str) -> None:
    from crossalign.bridge.lm import load_lm
    from crossalign.bridge.sequence import ChatFormat, build_batch

    lm = load_lm(tiny_lm)
    fmt = ChatFormat(lm.tokenizer, "answer about the input")
    before, after = fmt.prompt("describe this .")
    tok = lm.tokenizer
    assert tok.decode(before).split()[-2:] == ["<|im_start|>", "user"]
    assert tok.decode(after).split()[:3] == ["describe", "this", "."]
    ans = fmt.answer("describe this .", "a red circle")
    assert tok.decode(ans).split() == ["a", "red", "circle", "<|im_end|>"]
    assert tok.convert_tokens_to_ids("<|im_end|>") in fmt.stop_ids
    prefix = torch.randn(2, 3, lm.hidden)
    x, mask, pos, lab = build_batch(lm.model.get_input_embeddings(), fmt, prefix, ["describe this .", "how many shapes ?"],
                                    ["a red circle", "two"])
    n0 = len(before) + 3 + len(after) + len(ans)
    assert mask[0].sum() == n0 and torch.equal(x[0, len(before):len(before) + 3], prefix[0])
    assert lab[0][lab[0] != -100].tolist() == ans
    assert (lab[1] != -100).sum() == len(fmt.answer("how many shapes ?", "two"))
    # generation batches are left-padded with positions restarting at 0 for each row
    x, mask, pos, _ = build_batch(lm.model.get_input_embeddings(), fmt, prefix, ["describe this .", "how many shapes ?"], None)
    assert mask[:, -1].all() and int(pos[0, -1]) == int(mask[0].sum()) - 1


def test_kv_cached_batched_decode_matches_plain_forward(tiny_lm: str) -> None:
    """Reference: recompute the whole sequence each step, one row at a time, no cache, no padding."""
    from crossalign.bridge.lm import load_lm
    from crossalign.bridge.sequence import ChatFormat, build_batch, greedy_decode

    lm = load_lm(tiny_lm)
    fmt = ChatFormat(lm.tokenizer, "answer about the input")
    emb = lm.model.get_input_embeddings()
    torch.manual_seed(1)
    prefix = torch.randn(3, 2, lm.hidden) * 2
    prompts = ["describe this .", "how many shapes are there ?", "where is the red circle ?"]
    x, mask, pos, _ = build_batch(emb, fmt, prefix, prompts, None)
    got = torch.stack(list(greedy_decode(lm.model, x, mask, pos, [-1], 6)), 1)  # (B, 6), never stops
    for b in range(3):
        xb, mb, pb, _ = build_batch(emb, fmt, prefix[b:b + 1], prompts[b:b + 1], None)
        seq = xb
        ref = []
        with torch.no_grad():
            for _ in range(6):
                logits = lm.model(inputs_embeds=seq).logits[0, -1]
                t = int(logits.argmax())
                ref.append(t)
                seq = torch.cat([seq, emb(torch.tensor([[t]]))], 1)
        assert got[b].tolist() == ref


# ---- training, saving, asking, evaluating (tiny LM, real run and features) ------------------------
@pytest.fixture(scope="module")
def tiny_bridge(tiny_run: Path, scenes_small: Path, tiny_lm: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from crossalign.bridge import BridgeConfig
    from crossalign.recipes.bridge import train_bridge

    out = tmp_path_factory.mktemp("bridge")
    cfg = BridgeConfig(lm=tiny_lm, prefix_tokens=2, hidden=64, train={"epochs": 4, "batch_size": 8, "lr": 1e-2},
                       qa_per_row=2,
                       lora_r=4, lora_epochs=1, val_rows=6, max_new_tokens=12, autocast_bf16=False,
                       system="answer about the input")
    folder, res = train_bridge(tiny_run, scenes_small, out, cfg, progress=False)
    return folder, res


def test_train_reduces_loss_and_saves_folder(tiny_bridge) -> None:  # type: ignore[no-untyped-def]
    folder, res = tiny_bridge
    hist = res["stage1"].history
    assert len(hist) == 4 and hist[-1]["train/loss"] < hist[0]["train/loss"] * 0.9
    assert "stage2" in res  # LoRA stage ran
    meta = json.loads((folder / "bridge.json").read_text())
    assert meta["dim"] == 32 and meta["lora_r"] == 4 and Path(meta["run"]).exists()
    assert (folder / "projector.safetensors").exists() and (folder / "lora.safetensors").exists()


def test_load_reproduces_outputs_and_stream_equals_answer(tiny_bridge, scenes_small: Path) -> None:  # type: ignore[no-untyped-def]
    from crossalign.bridge import Bridge, ask
    from crossalign.data.manifest import load_manifest

    folder, _ = tiny_bridge
    b1, b2 = Bridge.load(folder), Bridge.load(folder)
    rows = load_manifest(scenes_small).rows[:3]
    z = b1.embedder.embed("image", [r["image"] for r in rows], scenes_small)
    assert b1.generate(z) == b2.generate(z)
    img = scenes_small / rows[0]["image"]
    streamed = list(ask(b1, image=str(img), text="how many shapes are there ?"))
    assert "".join(streamed).strip() == b2.answer("image", str(img), "how many shapes are there ?")
    # a prefix from an image and from a radar signal: both run through the same projector
    assert isinstance(b1.answer("sensor", str(scenes_small / rows[0]["sensor"])), str)
    with pytest.raises(ValueError, match="exactly one"):
        ask(b1, image=str(img), audio="x.flac")


def test_lora_changes_the_lm(tiny_bridge) -> None:  # type: ignore[no-untyped-def]
    from crossalign.bridge import Bridge

    folder, _ = tiny_bridge
    b = Bridge.load(folder)
    lora = {n: p for n, p in b.lm.model.named_parameters() if "lora_B" in n}
    assert lora and any(float(p.abs().sum()) > 0 for p in lora.values())  # B starts at 0; training moved it


def test_evaluate_reports_bridge_baseline_and_transfer(tiny_bridge, scenes_small: Path) -> None:  # type: ignore[no-untyped-def]
    from crossalign.bridge import evaluate_bridge, format_table

    folder, _ = tiny_bridge
    res = evaluate_bridge(folder, scenes_small, limit=6, progress=False, split="test")
    names = set(res["systems"])
    assert {"bridge/image", "bridge/audio", "bridge/sensor", "retrieval/image", "retrieval/audio"} <= names
    for m in res["systems"].values():
        assert 0.0 <= m["attr/mean"] <= 1.0 and 0.0 <= m["qa/exact"] <= 1.0 and 0.0 <= m["bleu4"] <= 1.0
    # the retrieval baseline returns real training captions
    from crossalign.data.manifest import load_manifest

    train_caps = {r["text"] for r in load_manifest(scenes_small).rows if r["split"] == "train"}
    assert all(s["out"] in train_caps for s in res["samples"]["retrieval/image"])
    assert "audio/image attr ratio" in res["transfer"]
    assert "| bridge/image |" in format_table(res)


def test_cli_train_eval_ask(tiny_run: Path, scenes_small: Path, tiny_lm: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crossalign.cli import app

    r = CliRunner()
    out = tmp_path / "b"
    res = r.invoke(app, ["bridge", "train", str(tiny_run), "--data", str(scenes_small), "--out", str(out),
                         "--lm", tiny_lm, "--max-rows", "16", "--prefix-tokens", "2", "--projector", "linear"])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["bridge", "eval", str(out), "--data", str(scenes_small), "--limit", "4", "--columns", "image"])
    assert res.exit_code == 0, res.output
    assert "retrieval/image" in res.output and (out / "eval.json").exists()
    img = next((scenes_small / "images").glob("*.png"))
    res = r.invoke(app, ["ask", str(out), "--image", str(img), "--text", "how many shapes are there ?"])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["ask", str(out), "--image", str(tmp_path / "missing.png")])
    assert res.exit_code != 0 and "missing.png" in res.output


def test_http_ask_route(tiny_bridge, scenes_small: Path) -> None:  # type: ignore[no-untyped-def]
    import base64

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from crossalign.bridge import Bridge
    from crossalign.serve.routes.ask import add_ask_route
    from crossalign.serve.errors import install_error_handlers

    folder, _ = tiny_bridge
    b = Bridge.load(folder)
    app = FastAPI()
    install_error_handlers(app)
    add_ask_route(app, b)
    img = next((scenes_small / "images").glob("*.png"))
    data = base64.b64encode(img.read_bytes()).decode()
    with TestClient(app) as c:
        r = c.post("/v1/ask", json={"image": data, "question": "how many shapes are there ?"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["modality"] == "image" and body["answer"] == b.answer("image", str(img), "how many shapes are there ?")
        r = c.post("/v1/ask", json={"image": data, "stream": True})
        events = [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert "".join(json.loads(e)["delta"] for e in events[:-1]).strip() == b.answer("image", str(img))
        r = c.post("/v1/ask", json={"question": "hi"})
        assert r.status_code == 400 and "exactly one" in r.text
        r = c.post("/v1/ask", json={"image": "not base64!!"})
        assert r.status_code == 400


def test_bad_inputs_named() -> None:
    from crossalign.bridge import BridgeConfig, find_bridge
    from crossalign.bridge.lm import resolve_lm

    with pytest.raises(ValueError, match="unknown language model"):
        resolve_lm("gpt:foo")
    with pytest.raises(ValueError, match="projector"):
        BridgeConfig(projector="conv")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no bridge"):
        find_bridge("/nonexistent")
    from crossalign.bridge.projector import PrefixProjector

    p = PrefixProjector(8, 16, 3, "mlp", 32, target_norm=5.0)
    out = p(torch.randn(4, 8))
    assert out.shape == (4, 3, 16)
    assert out.norm(dim=-1).mean().item() == pytest.approx(5.0, rel=0.05)


def test_bridge_autocast_only_where_the_cpu_has_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """`autocast_bf16` is a request: on a CPU that would emulate bf16 (several times slower than
    fp32) the frozen LM runs in fp32, and the cached layers are stored in fp32."""
    from types import SimpleNamespace

    import crossalign.bridge.model as bm
    from crossalign.bridge.config import BridgeConfig

    for native in (False, True):
        monkeypatch.setattr(bm, "bf16_autocast_pays", lambda device_type, native=native: native)
        for asked in (False, True):
            b = SimpleNamespace(cfg=BridgeConfig(autocast_bf16=asked))
            on = bm.Bridge.bf16.fget(b)  # type: ignore[attr-defined]
            assert on is (asked and native)
            with bm.Bridge.autocast(SimpleNamespace(bf16=on)):  # type: ignore[arg-type]
                y = torch.nn.Linear(4, 2)(torch.randn(3, 4))
            assert y.dtype == (torch.bfloat16 if on else torch.float32)


@pytest.mark.slow
def test_smollm2_end_to_end(tiny_run: Path, scenes_small: Path, tmp_path: Path) -> None:
    """The packaged SmolLM2 (GGUF -> safetensors cache), a short projector training, ask and eval."""
    import time

    from crossalign.bridge import Bridge, BridgeConfig, evaluate_bridge
    from crossalign.recipes.bridge import train_bridge
    from crossalign.bridge.lm import load_lm

    lm = load_lm("smollm2")  # converts once into the test cache
    t = time.time()
    load_lm("smollm2")
    assert time.time() - t < 5  # the cached safetensors load fast (< 1 s on an idle machine)
    cfg = BridgeConfig(max_rows=16, train={"epochs": 1, "batch_size": 8}, val_rows=4, qa_per_row=1, max_new_tokens=16)
    folder, res = train_bridge(tiny_run, scenes_small, tmp_path / "b", cfg, progress=False, lm=lm)
    assert np.isfinite(res["stage1"].best_metric)
    b = Bridge.load(folder, lm=lm)
    img = next((scenes_small / "images").glob("*.png"))
    text = b.answer("image", str(img), max_new_tokens=12)
    assert isinstance(text, str) and len(text) > 0
    res = evaluate_bridge(folder, scenes_small, limit=3, columns=["image"], bridge=b, progress=False)
    assert "bridge/image" in res["systems"]
