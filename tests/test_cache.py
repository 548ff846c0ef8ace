"""Content-keyed feature cache: reuse, partial re-encoding, version isolation, resume after interrupt."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch

from crossalign.data.cache import FeatureCache
from crossalign.data.extract import encode_column
from crossalign.data.manifest import Manifest, load_manifest
from crossalign.datasets.registry import make_dataset
from crossalign.encoders import Encoder, EncoderSpec, build_encoder

N = 16


class Interrupting(Encoder):
    """Our real encoder, behind a wrapper that simulates Ctrl-C after `after` encode calls.

    `spec` may be overridden to stand for a new version of the same encoder.
    """

    def __init__(self, inner: Encoder, after: int | None = None, spec: EncoderSpec | None = None):
        super().__init__()
        self.inner, self.after, self.calls, self.items = inner, after, 0, 0
        self.spec = spec or inner.spec

    def encode(self, batch: Sequence[Any]) -> torch.Tensor:
        if self.after is not None and self.calls >= self.after:
            raise KeyboardInterrupt
        self.calls += 1
        self.items += len(batch)
        return self.inner.encode(batch)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cache-scenes")
    make_dataset("scenes", d, n=N, seed=7, audio=False)
    return d


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return build_encoder("text:minilm")


def _copy_manifest(src: Path) -> Manifest:
    m = load_manifest(src)
    return Manifest([dict(r) for r in m.rows], m.path, m.base_dir)


def test_second_run_reuses_everything(scenes: Path, minilm: Encoder, tmp_path: Path) -> None:
    m = load_manifest(scenes)
    counted = Interrupting(minilm)
    first = encode_column(m, "text", counted, batch_size=8, flush_every=8, cache_dir=tmp_path)
    assert first.encoded == N and counted.items == N and not first.problems
    assert len(list((tmp_path / minilm.spec.cache_key()).glob("shard-*.npy"))) == 2  # flushed per 8
    second = encode_column(m, "text", counted, batch_size=8, cache_dir=tmp_path)
    assert second.encoded == 0 and counted.items == N  # the encoder was not called again
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(second.rows, np.arange(N))
    # The cached vectors are the encoder's own output for each row.
    direct = minilm.encode([r["text"] for r in m.rows]).numpy()
    np.testing.assert_allclose(second.features, direct, atol=1e-5)
    spec = json.loads((tmp_path / minilm.spec.cache_key() / "spec.json").read_text())
    assert spec["name"] == "text:minilm" and spec["version"] == minilm.spec.version


def test_changed_content_reencodes_only_that_row(scenes: Path, minilm: Encoder, tmp_path: Path) -> None:
    m = _copy_manifest(scenes)
    encode_column(m, "text", minilm, cache_dir=tmp_path)
    m.rows[5]["text"] = "a brand new caption nobody has encoded"
    m.rows[9]["text"] = "  " + m.rows[9]["text"].replace(" ", "   ") + "\n"  # whitespace only: same text
    again = encode_column(m, "text", minilm, cache_dir=tmp_path)
    assert again.encoded == 1
    np.testing.assert_allclose(again.features[5], minilm.encode([m.rows[5]["text"]])[0].numpy(), atol=1e-5)

    # A file-backed column keys on the file's bytes, not its name: rewrite one radar map in place.
    sensor = build_encoder("sensor:conv2d", input_shape=(32, 24))
    first = encode_column(m, "sensor", sensor, cache_dir=tmp_path)
    assert first.encoded == N
    path = m.base_dir / m.rows[3]["sensor"]
    np.save(path, np.load(path) + 1.0)
    try:
        again = encode_column(m, "sensor", sensor, cache_dir=tmp_path)
        assert again.encoded == 1
        np.testing.assert_allclose(again.features[3], first.features[3] + 1.0, atol=1e-5)
    finally:
        np.save(path, np.load(path) - 1.0)


def test_new_version_or_options_get_their_own_folder(scenes: Path, minilm: Encoder, tmp_path: Path) -> None:
    m = load_manifest(scenes)
    old = encode_column(m, "text", minilm, cache_dir=tmp_path)
    bumped = Interrupting(minilm, spec=dataclasses.replace(minilm.spec, version=minilm.spec.version + "-next"))
    new = encode_column(m, "text", bumped, cache_dir=tmp_path)
    assert new.encoded == N  # nothing of the old version is trusted
    tokens = build_encoder("text:minilm", tokens=True)
    tok = encode_column(Manifest(m.rows[:2], m.path, m.base_dir), "text", tokens, cache_dir=tmp_path)
    assert tok.features.shape == (2, 128, 384) and tok.encoded == 2
    folders = {p.name for p in tmp_path.iterdir() if p.is_dir()}
    assert folders == {minilm.spec.cache_key(), bumped.spec.cache_key(), tokens.spec.cache_key()}
    # The old version's entries are still there and still used.
    again = encode_column(m, "text", minilm, cache_dir=tmp_path)
    assert again.encoded == 0
    np.testing.assert_array_equal(again.features, old.features)


def test_interrupted_run_resumes(scenes: Path, minilm: Encoder, tmp_path: Path) -> None:
    m = load_manifest(scenes)
    with pytest.raises(KeyboardInterrupt):
        encode_column(m, "text", Interrupting(minilm, after=2), batch_size=6, cache_dir=tmp_path / "a")
    cache = FeatureCache(minilm.spec, str(tmp_path / "a"))  # str or Path
    assert len(cache) == 12  # the two finished batches were flushed on the way out
    assert not list(cache.dir.glob(".*.npy")) and not list(cache.dir.glob(".*.keys"))  # no temp files left
    rest = Interrupting(minilm)
    resumed = encode_column(m, "text", rest, batch_size=6, cache_dir=tmp_path / "a")
    assert resumed.encoded == N - 12 and rest.items == N - 12
    fresh = encode_column(m, "text", minilm, batch_size=6, cache_dir=tmp_path / "b")
    assert fresh.encoded == N
    np.testing.assert_array_equal(resumed.rows, fresh.rows)
    # Same texts, different batch neighbours: equal up to float noise of padded attention.
    np.testing.assert_allclose(resumed.features, fresh.features, atol=1e-5)


def test_bad_rows_are_skipped_and_listed(scenes: Path, minilm: Encoder, tmp_path: Path) -> None:
    m = _copy_manifest(scenes)
    m.rows[2]["text"] = ""
    m.rows[7]["image"] = "images/nope.png"
    (m.base_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    m.rows[11]["image"] = "broken.png"
    m.rows[12]["image"] = "broken.png"  # same content as a failing row: also reported, not crashed on
    try:
        t = encode_column(m, "text", minilm, cache_dir=tmp_path)
        assert [(p.row, p.column) for p in t.problems] == [(3, "text")]
        assert t.encoded == N - 1 and 2 not in t.rows.tolist() and len(t.features) == N - 1

        small = Manifest(m.rows[:14], m.path, m.base_dir)
        img = build_encoder("image:efficientnet-lite0", size=64)
        cf = encode_column(small, "image", img, batch_size=4, cache_dir=tmp_path)
        assert [(p.row, p.column) for p in cf.problems] == [(8, "image"), (12, "image"), (13, "image")]
        assert "not found" in cf.problems[0].message and "corrupt" in cf.problems[1].message
        assert cf.rows.tolist() == [i for i in range(14) if i not in (7, 11, 12)]
        assert cf.encoded == 11
        again = encode_column(small, "image", img, batch_size=4, cache_dir=tmp_path)
        assert again.encoded == 0 and again.problems == cf.problems
        np.testing.assert_array_equal(again.features, cf.features)
    finally:
        (m.base_dir / "broken.png").unlink()


def test_encoder_failure_on_one_item_spares_the_batch(scenes: Path, tmp_path: Path) -> None:
    m = _copy_manifest(scenes)
    m.rows[4]["sensor"] = [[0.0] * 5] * 5  # readable, but the wrong shape for this tower
    sensor = build_encoder("sensor:conv2d", input_shape=(32, 24))
    cf = encode_column(m, "sensor", sensor, batch_size=8, cache_dir=tmp_path)
    assert [(p.row, p.column) for p in cf.problems] == [(5, "sensor")]
    assert "expected (32, 24)" in cf.problems[0].message
    assert len(cf.rows) == N - 1


def test_unfinished_shard_is_invisible(tmp_path: Path) -> None:
    spec = EncoderSpec("x:y", "sensor", "v/1", (3,), trainable=False)
    a = FeatureCache(spec, tmp_path)
    a.put(["k1", "k2"], np.ones((2, 3)))
    np.save(a.dir / "shard-000007.npy", np.zeros((1, 3), np.float32))  # data without its keys file
    (a.dir / "shard-000008.keys").write_text("k9\n")  # keys without data
    b = FeatureCache(spec, tmp_path)  # a second process opening the same folder
    assert len(b) == 2 and "k9" not in b
    b.put(["k3"], np.full((1, 3), 3.0))
    a.put(["k4"], np.full((1, 3), 4.0))  # a's idea of the next shard id is stale; must not clobber b
    c = FeatureCache(spec, tmp_path)
    np.testing.assert_array_equal(c.get_many(["k4", "k1", "k3"]), [[4.0] * 3, [1.0] * 3, [3.0] * 3])
    with pytest.raises(ValueError):
        a.put(["k5"], np.zeros((2, 3)))
