"""A new modality through the registries alone: a toy `vector` modality (tests/toy_vector.py: a
fixed-size `.npy` reader and a seeded random-projection encoder) trained beside text, evaluated,
indexed, and served over real HTTP by a `crossalign serve` process that finds it as a plug-in
(a `crossalign.plugins` entry point), with no edit to crossalign itself.

A built-in modality would touch four files:
1. `src/crossalign/modalities/vector.py` — the reader and its `Modality` facts (client decoder,
   MIME types, file suffixes, HTTP field type, CLI help, same-shape check);
2. `src/crossalign/modalities/__init__.py` — one name in the registry tuple;
3. `src/crossalign/encoders/vector.py` — the encoder and its spec;
4. `src/crossalign/encoders/__init__.py` — the factory, its `EncoderFacts` and the modality's default.
The CLI (`--input vector=FILE`), `/v1/embeddings`, `/v1/search`, `/v1/explain`, `/v1/ask`, tar
shards and `data check` follow the registry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import toy_vector
from serving import serving

from crossalign.data.manifest import write_manifest

KINDS = ["red", "green", "blue", "small", "large", "round"]
N_PER_KIND = 24
SIZE = 16


@pytest.fixture
def vector_registered() -> Iterator[None]:
    toy_vector.register()
    try:
        yield
    finally:
        toy_vector.unregister()  # later tests see the registries as they were


def _data(root: Path) -> Path:
    """Rows of six kinds: text names the kind, the vector is the kind's centre plus noise."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(KINDS), SIZE))
    (root / "vec").mkdir(parents=True)
    rows = []
    for k, word in enumerate(KINDS):
        for j in range(N_PER_KIND):
            name = f"vec/{word}{j}.npy"
            np.save(root / name, (centres[k] + 0.3 * rng.normal(size=SIZE)).astype(np.float32))
            split = "test" if j < 6 else ("val" if j < 10 else "train")
            rows.append({"id": f"{word}{j}", "text": f"a thing that is {word}", "vector": name,
                         "group": word, "label": word, "split": split})
    write_manifest(rows, root / "manifest.jsonl")
    return root / "manifest.jsonl"


def _plugin_path(root: Path) -> Path:
    """A folder on which `importlib.metadata` finds an installed distribution declaring the plug-in."""
    dist = root / "toy_vector_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-vector-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[crossalign.plugins]\nvector = toy_vector:register\n")
    return root


def test_vector_modality_end_to_end(vector_registered: None, tmp_path: Path) -> None:
    from crossalign.config import RunConfig
    from crossalign.data.check import check_manifest
    from crossalign.data.manifest import load_manifest
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.index import Searcher, build_index
    from crossalign.recipes.align import train

    data = _data(tmp_path / "data")
    m = load_manifest(data)
    assert m.modality_columns == {"text": "text", "vector": "vector"}
    assert check_manifest(m) == []

    cfg = RunConfig.from_dict({
        "model": {"views": [{"column": "text"}, {"column": "vector"}], "dim": 32, "head": {"hidden": 64}},
        "train": {"data": str(data), "out": str(tmp_path / "run"), "epochs": 3, "batch_size": 32,
                  "progress": False, "patience": 0}})
    run, _ = train(cfg, resume=False, progress=False)
    from crossalign.index.identity import run_identity

    saved = json.loads((run / "encoders.json").read_text())
    assert saved["vector"]["name"] == "vector:projection"
    assert saved["vector"]["options"] == {"input_shape": [SIZE], "dim": 32, "seed": 0}  # inferred from the data

    metrics = evaluate_run(run, split="test").metrics
    r1 = metrics["text->vector/R@1"]
    assert r1 > 3 / len(KINDS), metrics  # six kinds, one caption per kind: chance is 1/6

    idx = tmp_path / "index"
    report = build_index(run, data, idx, ["vector"], split="test")
    assert report.added == 6 * len(KINDS) and report.problems == []
    s = Searcher.open(idx, run)
    hits = s.search("text", "a thing that is blue", 6, None, None)
    assert sum(h.label == "blue" for h in hits) >= 4, [h.label for h in hits]

    plugin = _plugin_path(tmp_path / "plugin")
    tests_dir = Path(__file__).resolve().parent
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin), str(tests_dir), env.get("PYTHONPATH", "")) if p)
    vec = np.load(data.parent / "vec/blue0.npy").tolist()
    # the CLI's generic `--input MODALITY=VALUE` reaches the new modality with no new flag
    from typer.testing import CliRunner

    from crossalign.cli import app

    r = CliRunner().invoke(app, ["search", str(idx), "--input", f"vector={data.parent / 'vec/blue0.npy'}",
                                 "-k", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["results"][0]["id"] == "blue0"

    with serving([str(run), "--index", str(idx)], tmp_path / "serve.log", env=env) as (url, _):
        r = httpx.post(url + "/v1/embeddings", json={"input": [{"type": "vector", "data": vec},
                                                                 "a thing that is blue"]}, timeout=60)
        assert r.status_code == 200, r.text
        z = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
        assert z.shape == (2, run_identity(run).dim)  # the run's width (a routed pair: its route's)
        local = np.concatenate([s.embedder.embed("vector", [vec]), s.embedder.embed("text", ["a thing that is blue"])])
        # Unit vectors, compared by direction: a routed closed form whitens its inputs, so the server's
        # and this process's float32 summation orders in MiniLM can move a small element by ~1e-3.
        cos = (z * local).sum(1) / (np.linalg.norm(z, axis=1) * np.linalg.norm(local, axis=1))
        assert (cos > 1 - 1e-5).all(), cos
        r = httpx.post(url + "/v1/search", json={"vector": vec, "k": 3}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["id"] == "blue0"
        bad = httpx.post(url + "/v1/embeddings", json={"input": [{"type": "vector", "data": [[1.0, 2.0]]}]},
                         timeout=60)
        assert bad.status_code == 400 and "1-D" in bad.json()["error"]["message"], bad.text


def test_registries_know_the_toy_modality_only_while_registered(vector_registered: None, tmp_path: Path) -> None:
    import io
    import tarfile

    from crossalign.data.check import check_manifest
    from crossalign.data.manifest import load_manifest
    from crossalign.data.shards import iter_rows
    from crossalign.encoders import build_encoder
    from crossalign.modalities import get_reader, modality_names, modality_of_suffix

    assert "vector" in modality_names() and modality_of_suffix(".vec") == "vector"
    # tar shards: `<key>.vec` members land in the `vector` column as bytes the reader takes
    buf = io.BytesIO()
    np.save(buf, np.arange(4, dtype=np.float32))
    with tarfile.open(tmp_path / "s.tar", "w") as tf:
        for name, blob in (("k1.vec", buf.getvalue()), ("k1.txt", b"four numbers")):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    (row,) = iter_rows(tmp_path / "s.tar")
    assert row["text"] == "four numbers" and isinstance(row["vector"], bytes)
    assert get_reader("vector").read(row["vector"]).tolist() == [0.0, 1.0, 2.0, 3.0]
    # `data check`: a column of one modality with `same_shape` flags the odd vector out
    for i, n in enumerate((4, 4, 5)):
        np.save(tmp_path / f"v{i}.npy", np.zeros(n, np.float32))
    write_manifest([{"text": "x", "vector": f"v{i}.npy"} for i in range(3)], tmp_path / "m.jsonl")
    problems = check_manifest(load_manifest(tmp_path / "m.jsonl"))
    assert [(p.row, p.column) for p in problems] == [(3, "vector")] and "shape (5,)" in problems[0].message
    # the spec records exactly the options the encoder takes: a saved run rebuilds it from them
    enc = build_encoder("vector:projection", input_shape=[4], dim=8)
    again = build_encoder(enc.spec.name, **enc.spec.options)
    assert again.spec == enc.spec and bool((again.w == enc.w).all())


def test_registries_are_as_before_without_it() -> None:
    from crossalign.modalities import modality_names

    assert modality_names() == ("text", "image", "audio", "sensor")


@pytest.mark.parametrize("name,options,bad", [
    ("sensor:mlp", {"input_shape": [4], "colour": 1}, "colour"),
    ("vector:projection", {"input_shape": [4], "size": 3}, "size"),
])
def test_unknown_encoder_options_are_refused(vector_registered: None, name: str, options: dict, bad: str) -> None:
    from crossalign.encoders import build_encoder

    with pytest.raises(ValueError, match=f"encoder '{name}' has no option '{bad}'"):
        build_encoder(name, **options)


def test_saved_specs_rebuild_their_encoders() -> None:
    """Every option a built-in scratch tower records is one its factory takes (none is ignored)."""
    from crossalign.encoders import build_encoder

    for kind, shape in (("mlp", [6]), ("conv1d", [2, 16]), ("conv2d", [8, 8])):
        enc = build_encoder(f"sensor:{kind}", input_shape=shape, dim=16, width=8)
        assert build_encoder(enc.spec.name, **enc.spec.options).spec == enc.spec


def test_a_broken_plugin_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crossalign.plugins as plugins
    from crossalign.modalities import modality_names

    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[crossalign.plugins]\nbroken = no_such_module_here:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(plugins._state, "loaded", False)  # noqa: SLF001 - scan again with the new path
    with pytest.raises(RuntimeError, match="plug-in 'broken' .*no_such_module_here"):
        modality_names()
    monkeypatch.undo()  # the plug-in state and sys.path as they were
