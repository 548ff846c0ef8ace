"""The persistent index: exactness against brute force, approximate recall, filters, add/delete,
crash safety (a real writer killed mid-commit), verification on open, and run compatibility."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crossalign.index import (
    CorruptIndexError,
    IncompatibleRunError,
    IndexLockedError,
    IndexParams,
    Searcher,
    VectorIndex,
    add_to_index,
    build_index,
    delete_from_index,
    run_identity,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, dim: int, seed: int, centers: int = 50) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim))
    return _unit(c[rng.integers(0, centers, n)] + 0.6 * rng.normal(size=(n, dim)))


def _items(n: int, offset: int = 0) -> list[dict]:
    return [
        {
            "id": f"r{i + offset}",
            "modality": "image" if i % 2 == 0 else "audio",
            "label": i % 3,
            "source": f"/data/{i + offset}.png",
        }
        for i in range(n)
    ]


def _make(path: Path, n: int = 600, dim: int = 24, kind: str = "flat", seed: int = 0) -> np.ndarray:
    x = _clustered(n, dim, seed)
    with VectorIndex.create(path, dim, IndexParams(kind=kind)) as ix:
        ix.add(x, _items(n))
        ix.commit()
    return x


def test_flat_matches_brute_force_with_modality_and_filters(tmp_path: Path) -> None:
    x = _make(tmp_path / "ix")
    q = _clustered(20, 24, seed=9)
    ix = VectorIndex.open(tmp_path / "ix")
    img = np.arange(0, 600, 2)  # even rows are images
    for target, rows in ((None, np.arange(600)), ("image", img), ("audio", np.arange(1, 600, 2))):
        hits = ix.search(q, k=7, modality=target)
        ref = np.argsort(-(q @ x[rows].T), axis=1)[:, :7]
        for qi in range(len(q)):
            assert [h.id for h in hits[qi]] == [f"r{rows[j]}" for j in ref[qi]]
            np.testing.assert_allclose(
                [h.score for h in hits[qi]], (q[qi] @ x[rows[ref[qi]]].T), rtol=1e-5, atol=1e-5
            )
    hits = ix.search(q, k=5, modality="image", filters={"label": [1, "2"]})
    allowed = img[img % 3 != 0]
    ref = np.argsort(-(q @ x[allowed].T), axis=1)[:, :5]
    assert [[h.id for h in hs] for hs in hits] == [[f"r{allowed[j]}" for j in r] for r in ref]
    assert all(h.modality == "image" and h.label in (1, 2) for hs in hits for h in hs)
    with pytest.raises(ValueError, match="holds no 'text'"):
        ix.search(q, modality="text")
    with pytest.raises(ValueError, match="shape"):
        ix.search(np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="k must be"):
        ix.search(q, k=0)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_recall_and_delete(tmp_path: Path, kind: str) -> None:
    n, dim = 4000, 32
    x = _clustered(n, dim, seed=1)
    q = _clustered(50, dim, seed=2)
    with VectorIndex.create(tmp_path / "ix", dim, IndexParams(kind=kind, nprobe=8)) as ix:
        ix.add(x, [{"id": str(i), "modality": "image"} for i in range(n)])
        ix.commit()
    ix = VectorIndex.open(tmp_path / "ix")
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    got = ix.search(q, k=10)
    recall = np.mean([len({int(h.id) for h in g} & set(e.tolist())) / 10 for g, e in zip(got, exact)])
    assert recall >= 0.9, recall
    # Deleting the exact top hits (HNSW: tombstones, IVF: removal) must drop them from every answer.
    top = sorted({str(i) for i in exact[:, 0]})
    with VectorIndex.open(tmp_path / "ix", writable=True) as w:
        assert w.delete(top)[0] == len(top)
        w.commit()
    ix = VectorIndex.open(tmp_path / "ix")
    assert len(ix) == n - len(top)
    assert not {h.id for hs in ix.search(q, k=10) for h in hs} & set(top)


def test_add_delete_duplicates_and_persistence(tmp_path: Path) -> None:
    p = tmp_path / "ix"
    x = _make(p, n=100)
    with VectorIndex.open(p, writable=True) as ix:
        with pytest.raises(ValueError, match="already in"):
            ix.add(x[:1], [{"id": "r0", "modality": "image"}])
        assert ix.add(x[:1], [{"id": "r0", "modality": "image"}], on_duplicate="skip") == 0
        new = _unit(np.ones((1, 24), np.float32))
        assert ix.add(new, [{"id": "r0", "modality": "image", "label": "moved"}], on_duplicate="replace") == 1
        assert ix.add(x[:2], _items(2, offset=1000)) == 2
        with pytest.raises(ValueError, match="twice"):
            ix.add(x[:2], [{"id": "z", "modality": "image"}, {"id": "z", "modality": "image"}])
        with pytest.raises(ValueError, match="unknown fields"):
            ix.add(x[:1], [{"id": "q", "modality": "image", "colour": 1}])
        assert ix.delete(["r1", "r2", "nope"]) == (2, ["nope"])
        ix.commit()
    ix = VectorIndex.open(p)
    assert len(ix) == 100 - 2 + 2
    assert ix.info()["deleted_rows"] == 3  # two deleted + the replaced r0
    top = ix.search(new, k=1)[0][0]
    assert (top.id, top.label) == ("r0", "moved") and top.score == pytest.approx(1.0, abs=1e-5)
    assert "r1" not in {h.id for h in ix.search(x[1], k=20)[0]}
    with pytest.raises(PermissionError):
        ix.add(x[:1], _items(1, offset=5000))


def test_writer_lock_and_existing_folder(tmp_path: Path) -> None:
    p = tmp_path / "ix"
    _make(p, n=10)
    with VectorIndex.open(p, writable=True):
        with pytest.raises(IndexLockedError):
            VectorIndex.open(p, writable=True, lock_wait_s=0.2)
        VectorIndex.open(p)  # readers never wait
    with pytest.raises(FileExistsError):
        VectorIndex.create(p, 24)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        VectorIndex.create(tmp_path / "other", 24)


def test_open_detects_damage(tmp_path: Path) -> None:
    p = tmp_path / "ix"
    _make(p, n=50)
    rec = json.loads((p / "index.json").read_text())
    gdir = p / rec["dir"]
    fa = gdir / "vectors-image.faiss"
    good = fa.read_bytes()
    fa.write_bytes(good[:-100])  # truncated
    with pytest.raises(CorruptIndexError, match="vectors-image.faiss"):
        VectorIndex.open(p)
    fa.write_bytes(good[:200] + bytes([good[200] ^ 1]) + good[201:])  # same size, one bit flipped
    with pytest.raises(CorruptIndexError, match="checksum"):
        VectorIndex.open(p)
    fa.write_bytes(good)
    VectorIndex.open(p)
    (p / "index.json").write_text("{not json")
    with pytest.raises(CorruptIndexError, match="index.json"):
        VectorIndex.open(p)


_WRITER = r"""
import sys, numpy as np
from crossalign.index import VectorIndex, IndexParams
path, start = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(start)
with VectorIndex.open(path, writable=True) as ix:
    for b in range(start, start + 1000):
        x = rng.normal(size=(3000, 64)).astype("float32")
        ix.add(x, [{"id": f"b{b}-{i}", "modality": "image"} for i in range(3000)])
        ix.commit()
        print(len(ix), flush=True)
"""


def test_kill_mid_write_leaves_a_valid_index(tmp_path: Path) -> None:
    """A real writer process committing in a loop is SIGKILLed at several moments; every time the
    index reopens, verifies, and holds exactly a committed state."""
    p = tmp_path / "ix"
    with VectorIndex.create(p, 64) as ix:
        ix.add(
            np.eye(64, dtype=np.float32)[:2],
            [{"id": "seed0", "modality": "image"}, {"id": "seed1", "modality": "image"}],
        )
        ix.commit()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for round_, delay in enumerate((0.9, 1.3, 1.7)):
        before = len(VectorIndex.open(p))
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(p), str(round_ * 1000)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        committed = [int(s) for s in out.split()]
        ix = VectorIndex.open(p)  # verifies checksums and counts
        # The last printed count is durable; a commit that finished before the kill but was not yet
        # printed may also be current. Nothing in between is ever visible.
        assert len(ix) in {before, *committed, (committed[-1] if committed else before) + 3000}
        assert (len(ix) - before) % 3000 == 0
        assert ix.search(np.eye(64, dtype=np.float32)[:1], k=1)[0][0].id == "seed0"
    # Leftovers of a killed writer never break the next commit either.
    with VectorIndex.open(p, writable=True) as w:
        w.add(np.eye(64, dtype=np.float32)[2:3], [{"id": "after", "modality": "image"}])
        w.commit()
    assert len(list(p.glob("gen-*"))) <= 2
    assert VectorIndex.open(p).search(np.eye(64, dtype=np.float32)[2:3], k=1)[0][0].id == "after"


# ---- with a trained run -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenes_index(tiny_run: Path, scenes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("index") / "scenes"
    rep = build_index(tiny_run, scenes_small, out, ["image", "audio", "text"], split="test")
    assert rep.added == 3 * rep.by_column["image"] and not rep.problems
    return out


def test_build_and_query_with_run(scenes_index: Path, scenes_small: Path) -> None:
    from crossalign.data.manifest import load_manifest

    m = load_manifest(scenes_small).select("test")
    s = Searcher.open(scenes_index)
    assert s.index.modalities() == {"image": len(m), "audio": len(m), "text": len(m)}
    row = m.rows[0]
    # A query with an indexed item's own file finds it first. Images: cosine ~1 (cached features ==
    # live encoder). Audio less: the Whisper encoder pads a batch to its longest clip, so a clip
    # encoded alone (the query) differs a little from the same clip encoded in a batch (the cache).
    for mod, min_score in (("image", 0.99), ("audio", 0.85)):
        for r in m.rows[:3]:
            top = s.search(mod, r[mod], k=3, target=mod, base_dir=m.base_dir)[0]
            assert top.id == r["id"] and top.score > min_score, (mod, top)
            assert top.source == r[mod] and (m.base_dir / top.source).exists()  # manifest-relative
    top = s.search("text", row["text"], k=1, target="text")[0]
    assert top.id == row["id"] and top.source == row["text"] and top.score > 0.999
    hits = s.search("text", "a large red circle", k=5, target="image", filters={"split": "test"})
    assert len(hits) == 5 and all(h.modality == "image" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].extra["text"]  # the row's caption travels with the image hit


def test_add_delete_through_the_library(scenes_index: Path, scenes_small: Path, tmp_path: Path) -> None:
    idx = tmp_path / "copy"
    shutil.copytree(scenes_index, idx)
    before = VectorIndex.open(idx)
    with pytest.raises(ValueError, match="already in"):
        add_to_index(idx, scenes_small, ["image"], split="test")
    rep = add_to_index(idx, scenes_small, ["image"], split="val")
    after = VectorIndex.open(idx)
    assert len(after) == len(before) + rep.added and after.generation == before.generation + 1
    some = after.meta.cols["id"][0]
    n, missing = delete_from_index(idx, [some, "no-such-id"])
    assert n == 3 and missing == ["no-such-id"]  # image, audio and text of that row


def test_incompatible_run_is_refused(scenes_index: Path, tiny_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-run"
    shutil.copytree(tiny_run, other)
    assert run_identity(other).run_id == run_identity(tiny_run).run_id  # moving a run keeps its identity
    for name in ("best", "model", "last"):
        f = other / f"{name}.safetensors"
        if f.exists():
            state = load_file(str(f))
            key = next(k for k in state if state[k].is_floating_point() and state[k].numel() > 1)
            state[key] = state[key] + 0.01
            save_file(state, str(f))
    with pytest.raises(IncompatibleRunError, match="weights differ"):
        Searcher.open(scenes_index, run=other)
    with pytest.raises(IncompatibleRunError):
        add_to_index(scenes_index, tmp_path, run=other)


def test_build_with_split_on_a_manifest_without_split_column(tiny_run: Path, scenes_small: Path) -> None:
    """The same hash split train/eval assign (run's seed), not an error."""
    from crossalign.data.manifest import load_manifest, write_manifest
    from crossalign.data.splits import ensure_splits

    rows = [{k: v for k, v in r.items() if k not in ("split", "_row")} for r in load_manifest(scenes_small).rows]
    plain = write_manifest(rows, scenes_small / "no_split.jsonl")  # beside the files it names
    try:
        out = scenes_small.parent / "idx-no-split"
        rep = build_index(tiny_run, plain, out, ["text"], split="test", overwrite=True)
        seed = json.loads((tiny_run / "config.json").read_text())["train"]["seed"]
        expected = sum(r["split"] == "test" for r in ensure_splits(load_manifest(plain), seed).rows)
        assert rep.added == expected > 0
    finally:
        plain.unlink()
