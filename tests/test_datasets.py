"""Built-in generators: reproducible by seed, stable per item, leak-free splits, honest hard negatives."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from crossalign.data.check import check_manifest
from crossalign.data.manifest import load_manifest
from crossalign.datasets.registry import make_dataset
from crossalign.datasets.scenes.render import RADAR_SHAPE
from crossalign.datasets.scenes.scene import ATTRIBUTES, caption_en, hard_negative, sample_scene


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four small scene sets: seed 1 twice, seed 2, and seed 1 with fewer items."""
    out = {}
    for name, n, seed in (("a", 12, 1), ("b", 12, 1), ("c", 12, 2), ("short", 5, 1)):
        d = tmp_path_factory.mktemp(f"scenes-{name}")
        make_dataset("scenes", d, n=n, seed=seed, audio=False)
        out[name] = d
    return out


def test_scenes_same_seed_same_bytes(scenes: dict[str, Path]) -> None:
    a, b, c = _files(scenes["a"]), _files(scenes["b"]), _files(scenes["c"])
    assert a.keys() == b.keys() and len(a) == 12 * 2 + 2  # images + radar + manifest + dataset.json
    assert a == b
    differing = [k for k in a if k in c and a[k] != c[k]]
    assert "manifest.jsonl" in differing
    assert sum(k.startswith("images/") for k in differing) == 12  # every picture changes with the seed


def test_scenes_item_i_independent_of_n(scenes: dict[str, Path]) -> None:
    long, short = _files(scenes["a"]), _files(scenes["short"])
    for k, v in short.items():
        if k.startswith(("images/", "radar/")):
            assert long[k] == v, k
    assert _rows(scenes["a"])[:5] == _rows(scenes["short"])


def test_scenes_rows_are_complete_and_valid(scenes: dict[str, Path]) -> None:
    m = load_manifest(scenes["a"])
    assert "audio" not in m.modality_columns  # audio=False leaves the column out entirely
    assert check_manifest(m) == []
    for r in m.rows:
        assert r["sensor"].endswith(".npy")
        assert np.load(scenes["a"] / r["sensor"]).shape == RADAR_SHAPE
        assert r["text_neg"] != r["text"] and r["neg_attr"] in ATTRIBUTES
        assert r["split"] in ("train", "val", "test")
        assert len(r["text_zh"]) > 0 and r["label"].split()[0] in r["text"]


def test_scenes_with_audio(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing")
    from crossalign.modalities import get_reader

    make_dataset("scenes", tmp_path, n=3, seed=0)
    m = load_manifest(tmp_path)
    assert m.modality_columns["audio"] == "audio" and check_manifest(m) == []
    for r in m.rows:
        a = get_reader("audio").read(r["audio"], m.base_dir)
        # A spoken caption of 5-20 words at 140-190 wpm takes between 1 and 10 s.
        assert 1.0 < a.seconds < 10.0, (r["text"], a.seconds)


def test_splits_disjoint_and_groups_stay_in_one_split(tmp_path: Path) -> None:
    make_dataset("scenes", tmp_path, n=200, seed=5, audio=False)
    rows = _rows(tmp_path)
    split_of_group: dict[str, set[str]] = {}
    for r in rows:
        split_of_group.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    counts = Counter(r["split"] for r in rows)
    assert counts["train"] > 130 and counts["val"] >= 8 and counts["test"] >= 8  # ~80/10/10
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    # Captions are instance-level, not class-level: nearly every scene has its own caption.
    assert len({r["text"] for r in rows}) > 0.9 * len(rows)
    # Groups are exactly "same caption": rows that share a group share a caption and vice versa.
    assert len({r["group"] for r in rows}) == len({r["text"] for r in rows})


def _diff(a, b) -> list[tuple[str, object, object]]:  # noqa: ANN001
    """Attribute differences between two single objects."""
    return [(f, getattr(a, f), getattr(b, f)) for f in ("shape", "color", "size", "cell") if getattr(a, f) != getattr(b, f)]


def test_hard_negative_changes_exactly_one_attribute() -> None:
    seen = Counter()
    for k in range(400):
        rng = random.Random(f"hn:{k}")
        objs = sample_scene(rng)
        neg, attr = hard_negative(objs, rng)
        seen[attr] += 1
        assert len(neg) == len(objs) and caption_en(neg) != caption_en(objs)
        removed = [o for o in objs if o not in neg]
        added = [o for o in neg if o not in objs]
        assert len(removed) == len(added) == 1, (objs, neg)
        d = _diff(removed[0], added[0])
        assert len(d) == 1 and d[0][0] == ("cell" if attr == "position" else attr), (attr, d)
        assert len({o.cell for o in neg}) == len(neg)  # a moved object never lands on another one
    assert set(seen) == set(ATTRIBUTES)


def test_digits_deterministic(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    make_dataset("digits", a, n=30, seed=1, audio=False)
    make_dataset("digits", b, n=30, seed=1, audio=False)
    make_dataset("digits", c, n=30, seed=2, audio=False)
    assert _files(a) == _files(b)
    assert _rows(a) != _rows(c)
    rows = _rows(a)
    m = load_manifest(a)
    assert "audio" not in m.modality_columns and check_manifest(m) == []
    assert len({r["id"] for r in rows}) == 30
    for r in rows:
        assert r["text"] == f"the digit {r['label']}" and r["group"] == r["label"]
    # Digits are class-level on purpose: the group is the class, so groups do span splits here.
    assert len({r["label"] for r in rows}) >= 8


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("cifar", tmp_path)
