"""`ucr`: real 1-D sensor recordings from the UCR archive, paired with sentences about their class.

Source: the `.ts` files inside the PyPI wheel `aeon` 1.6.0 (BSD-3-Clause; UCR archive data).
Two archives whose classes can be said in words:
- GunPoint — x position of an actor's right hand (motion capture, 150 samples): class 1 draws a
  replica gun from a hip holster and points it, class 2 points an index finger;
- ItalyPowerDemand — 24 hourly values of Italy's electricity demand for one day: class 1 from
  October to March, class 2 from April to September (class 1 carries the early evening peak).
Every series is resampled to one length (`LENGTH`), so one 1-D tower reads both; `text` is one of
several paraphrases of its class (chosen by a hash of the id), `label`/`group` the class.

Splits: every row of the archive's TRAIN files trains (117 rows); validation is 20 % of each class's
TEST rows (by a hash of the id, 236 rows) and the rest is the test split (943 rows), so nothing of the
archive's test files is ever trained on. Validation came from TRAIN before (24 rows): one query was 2
points of R@1 there, and which candidate won (a trained tower or kernel CCA, 3-7 points apart on
test) followed the CPU's float order rather than the data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crossalign.datasets.sources import Source, fetch_wheel, read_from_wheel, write_source_json

__all__ = ["make_ucr", "parse_ts", "resample", "CLASSES", "LENGTH"]

PACKAGE, VERSION = "aeon", "1.6.0"
LENGTH = 128
VAL_FRACTION = 0.2  # of each class's TEST rows

# (archive, class in the file) -> (label, paraphrases)
CLASSES: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("GunPoint", "1"): ("gun-draw", (
        "a hand draws a gun from a hip holster, aims it at a target and puts it back",
        "motion capture of an actor pulling a replica pistol out of its holster and pointing it",
        "the hand moves from the hip to aim a gun for about a second, then returns it to the holster",
        "hand position while drawing a gun, aiming and holstering it again")),
    ("GunPoint", "2"): ("point", (
        "a hand points an index finger at a target without a gun, then drops to the side",
        "motion capture of an actor pointing with a bare finger for about a second",
        "the empty hand rises to point at a target and falls back, no holster involved",
        "hand position while pointing a finger at something and lowering the arm")),
    ("ItalyPowerDemand", "1"): ("winter-demand", (
        "hourly electricity demand in Italy on a day between October and March",
        "one day of Italian power consumption in the cold half of the year, with an early evening peak",
        "24 hours of electricity load in Italy during autumn or winter",
        "daily power demand curve of Italy in the winter months")),
    ("ItalyPowerDemand", "2"): ("summer-demand", (
        "hourly electricity demand in Italy on a day between April and September",
        "one day of Italian power consumption in the warm half of the year, with a flat late evening",
        "24 hours of electricity load in Italy during spring or summer",
        "daily power demand curve of Italy in the summer months")),
}
ARCHIVES = ("GunPoint", "ItalyPowerDemand")


def parse_ts(text: str) -> tuple[np.ndarray, list[str]]:
    """A univariate equal-length `.ts` file -> (series (N, L), class labels)."""
    xs, ys, in_data = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            in_data = in_data or line.lower().startswith("@data")
            continue
        if in_data:
            values, label = line.rsplit(":", 1)
            xs.append(np.array(values.split(","), dtype=np.float32))
            ys.append(label.strip())
    return np.stack(xs), ys


def resample(x: np.ndarray, length: int = LENGTH) -> np.ndarray:
    """Linear interpolation onto `length` evenly spaced points (block means when shrinking a lot)."""
    n = len(x)
    if n >= 2 * length:  # average first so fast detail does not alias
        x = np.array([b.mean() for b in np.array_split(x, length)], dtype=np.float32)
        n = len(x)
    return np.interp(np.linspace(0, n - 1, length), np.arange(n), x).astype(np.float32)


def _h(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


def make_ucr(out: Path, n: int | None = None, seed: int = 0, progress: Callable[[int], Any] | None = None,
             **_: Any) -> list[dict[str, Any]]:
    wheel = fetch_wheel(PACKAGE, VERSION)
    (out / "series").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    members = []
    for arch in ARCHIVES:
        for part in ("TRAIN", "TEST"):
            member = f"aeon/datasets/data/{arch}/{arch}_{part}.ts"
            members.append(member)
            x, y = parse_ts(read_from_wheel(wheel, member).decode("utf-8"))
            for i, (series, cls) in enumerate(zip(x, y)):
                label, texts = CLASSES[(arch, cls)]
                item_id = f"{arch.lower()}-{part.lower()}-{i:04d}"
                np.save(out / f"series/{item_id}.npy", resample(series))
                rows.append({"id": item_id, "sensor": f"series/{item_id}.npy",
                             "text": texts[int(_h(f"text:{item_id}"), 16) % len(texts)],
                             "label": label, "group": label, "archive": arch,
                             "split": "train" if part == "TRAIN" else "test"})
                if progress:
                    progress(1)
    _carve_val(rows, seed)
    if n is not None and n < len(rows):  # a seeded subset for quick tries; splits stay as assigned
        keep = sorted(sorted(range(len(rows)), key=lambda k: _h(f"{seed}:{rows[k]['id']}"))[:n])
        rows = [rows[k] for k in keep]
    write_source_json(out, [Source("pypi", PACKAGE, VERSION, "BSD-3-Clause (aeon); data: UCR time series archive",
                                   wheel.name, tuple(members))],
                      dataset="ucr", rows=len(rows), seed=seed, length=LENGTH,
                      classes={f"{a}/{c}": lbl for (a, c), (lbl, _) in CLASSES.items()},
                      split=f"train = the archive's TRAIN; val = {VAL_FRACTION:.0%} of each class's TEST rows by id hash; "
                            "test = the other TEST rows",
                      preprocessing=f"linear resampling to {LENGTH} points; values as in the archive (z-normalised)")
    return rows


def _carve_val(rows: list[dict[str, Any]], seed: int) -> None:
    by_class: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["split"] == "test":
            by_class.setdefault(r["label"], []).append(r)
    for members in by_class.values():
        members.sort(key=lambda r: _h(f"val:{seed}:{r['id']}"))
        for r in members[:max(1, round(VAL_FRACTION * len(members)))]:
            r["split"] = "val"
