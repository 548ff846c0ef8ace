"""Sharded manifests (JSONL, Parquet, WebDataset tar) streamed per rank, the streaming feature store,
and distributed extraction (`crossalign encode --nproc 2` equals one process)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossalign.data.shards import FeatureStore, encode_stream, iter_rows, rank_share, shard_files
from crossalign.modalities import get_reader


def _jsonl(path: Path, ids: range) -> None:
    path.write_text("".join(json.dumps({"id": f"j{i}", "text": f"caption {i}"}) + "\n" for i in ids))


def _parquet(path: Path, ids: range) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [f"p{i}" for i in ids], "text": [f"caption {i}" for i in ids]}), path,
                   row_group_size=3)


def _tar(path: Path, ids: range) -> None:
    with tarfile.open(path, "w") as tf:
        for i in ids:
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (i * 20 % 256, 0, 0)).save(buf, "PNG")
            for name, data in ((f"t{i}.png", buf.getvalue()), (f"t{i}.txt", f"red {i}".encode()),
                               (f"t{i}.json", json.dumps({"group": i % 2}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


@pytest.fixture()
def shards(tmp_path: Path) -> Path:
    _jsonl(tmp_path / "a.jsonl", range(5))
    _parquet(tmp_path / "b.parquet", range(5, 12))
    _tar(tmp_path / "c.tar", range(12, 16))
    _jsonl(tmp_path / "d.jsonl", range(16, 20))
    return tmp_path


def test_iter_rows_reads_every_format(shards: Path) -> None:
    rows = list(iter_rows(shards))
    assert [r["id"] for r in rows] == [f"j{i}" for i in range(5)] + [f"p{i}" for i in range(5, 12)] + \
        [f"t{i}" for i in range(12, 16)] + [f"j{i}" for i in range(16, 20)]
    tar_row = rows[12]
    assert tar_row["text"] == "red 12" and tar_row["group"] == 0 and tar_row["_shard"] == "c.tar"
    img = get_reader("image").read(tar_row["image"])  # bytes straight from the tar member
    assert img.size == (8, 8) and img.getpixel((0, 0))[0] == 12 * 20 % 256
    assert rows[7]["_row"] == 3 and rows[7]["_shard"] == "b.parquet"  # row numbers per shard


@pytest.mark.parametrize("world", [2, 3])
def test_rank_parts_are_disjoint_and_cover_everything(shards: Path, world: int) -> None:
    every = [r["id"] for r in iter_rows(shards)]
    parts = [[r["id"] for r in iter_rows(shards, rank, world)] for rank in range(world)]
    flat = [i for p in parts for i in p]
    assert sorted(flat) == sorted(every) and len(flat) == len(set(flat))
    if world == 2:  # 4 shards over 2 ranks: whole files per rank
        assert {r["_shard"] for r in iter_rows(shards, 1, 2)} == {"b.parquet", "d.jsonl"}


def test_bad_shards_are_named(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"id": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"x.jsonl: row 2: invalid JSON"):
        list(iter_rows(tmp_path / "x.jsonl"))
    (tmp_path / "x.csv").write_text("id\n1\n")
    with pytest.raises(ValueError, match="unsupported shard format"):
        shard_files(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError):
        shard_files(tmp_path / "nothing-*.jsonl")


def test_rank_share_keeps_row_numbers() -> None:
    from crossalign.data.manifest import Manifest

    m = Manifest([{"id": str(i), "_row": i + 1} for i in range(7)])
    assert [r["_row"] for r in rank_share(m, 1, 3).rows] == [2, 5]


def test_encode_stream_two_ranks_equal_one(tmp_path: Path) -> None:
    """Each rank streams its part into one store; loading gives the single-process result."""
    rng = np.random.default_rng(0)
    rows = [{"id": f"{i:05d}", "sensor": rng.normal(size=(4, 3)).astype(np.float32)} for i in range(1000)]
    w = rng.normal(size=(12, 5)).astype(np.float32)

    def embed(raws: list[np.ndarray]) -> np.ndarray:
        return np.stack(raws).reshape(len(raws), -1) @ w  # (n, 5)

    read = get_reader("sensor").read
    one = FeatureStore(tmp_path / "one")
    assert encode_stream(iter(rows), "sensor", embed, one, read=read, chunk=128) == 1000
    two = FeatureStore(tmp_path / "two")
    for rank in range(2):
        encode_stream((r for i, r in enumerate(rows) if i % 2 == rank), "sensor", embed, two, read=read,
                      chunk=100, rank=rank)
    ids1, f1 = one.load()
    ids2, f2 = two.load()
    assert ids1 == ids2 == [r["id"] for r in rows]
    np.testing.assert_allclose(f2, f1, rtol=1e-6)
    with pytest.raises(ValueError, match="no column 'image'"):
        encode_stream(iter(rows[:3]), "image", embed, one, read=read)


@pytest.mark.slow
def test_cli_encode_nproc_equals_single_process(tmp_path: Path) -> None:
    from crossalign.data.extract import encode_column
    from crossalign.data.manifest import load_manifest, write_manifest
    from crossalign.encoders import build_encoder

    write_manifest([{"id": str(i), "text": f"a {['red', 'blue', 'green'][i % 3]} shape number {i}"}
                    for i in range(30)], tmp_path / "m.jsonl")
    feats = {}
    for nproc in (1, 2):
        cache = tmp_path / f"cache{nproc}"
        env = {**os.environ, "CROSSALIGN_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
        r = subprocess.run([sys.executable, "-m", "crossalign", "encode", "--data", str(tmp_path / "m.jsonl"),
                            "--encoder", "text", "--nproc", str(nproc)], env=env, check=False, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "30 rows of 384" in r.stdout
        shards = list((cache / "features").glob("*/shard-*.keys"))
        assert len(shards) == nproc  # each rank wrote its own part of the cache
        cf = encode_column(load_manifest(tmp_path / "m.jsonl"), "text", build_encoder("text:minilm"),
                           cache_dir=cache / "features")
        assert cf.encoded == 0  # everything came from what the CLI wrote
        feats[nproc] = cf.features
    np.testing.assert_allclose(feats[2], feats[1], atol=1e-5)


def test_cli_encode_shards_streams_into_store(shards: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crossalign.cli import app
    from crossalign.encoders import build_encoder

    r = CliRunner().invoke(app, ["encode-shards", str(shards), "--column", "text", "--out", str(tmp_path / "st"),
                                 "--chunk", "6"])
    assert r.exit_code == 0, r.output
    ids, feats = FeatureStore(tmp_path / "st").load()
    rows = {r["id"]: r["text"] for r in iter_rows(shards)}
    assert sorted(rows) == ids and feats.shape == (20, 384)
    assert len(FeatureStore(tmp_path / "st").parts()) == 4  # 20 rows in chunks of 6
    ref = build_encoder("text:minilm").encode([rows[i] for i in ids]).numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-5)


@pytest.mark.slow
def test_cli_encode_shards_nproc_equals_single_process(shards: Path, tmp_path: Path) -> None:
    stores = {}
    for nproc in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        r = subprocess.run([sys.executable, "-m", "crossalign", "encode-shards", str(shards), "--column", "text",
                            "--out", str(tmp_path / f"st{nproc}"), "--nproc", str(nproc)], env=env,
                           check=False, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        stores[nproc] = FeatureStore(tmp_path / f"st{nproc}").load()
    assert stores[1][0] == stores[2][0]
    assert {p.split("-")[0] for p in FeatureStore(tmp_path / "st2").parts()} == {"r000", "r001"}
    np.testing.assert_allclose(stores[2][1], stores[1][1], atol=1e-5)
