"""Small synthetic paired data for the federation tests: captions (two phrasings) + a sensor vector
that encodes the same attributes (through a fixed random projection). Encoding it is cheap (MiniLM on short
captions, `.npy` reads), and text<->sensor retrieval is learnable within a few epochs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star"]
SIZES = ["small", "large"]
POSITIONS = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]


def make_pairs(out: Path, n: int = 360, seed: int = 0, sites: tuple[str, ...] = (),
               val_only_site: str | None = None) -> Path:
    """`out/manifest.jsonl` with text, sensor (and sensor_b, a second noisy view), group, label;
    with `sites`, a `site` column (round robin); rows of `val_only_site` are all in the val split."""
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(21, 32)).astype(np.float32)
    proj_b = rng.normal(size=(21, 24)).astype(np.float32)
    (out / "arrays").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        c, s, z, p = (int(rng.integers(k)) for k in (6, 4, 2, 9))
        onehot = np.zeros(21, np.float32)
        onehot[[c, 6 + s, 10 + z, 12 + p]] = 1
        np.save(out / "arrays" / f"{i}.npy", onehot @ proj + 0.1 * rng.normal(size=32).astype(np.float32))
        np.save(out / "arrays" / f"{i}b.npy", onehot @ proj_b + 0.1 * rng.normal(size=24).astype(np.float32))
        text = f"a {SIZES[z]} {COLOURS[c]} {SHAPES[s]} at the {POSITIONS[p]}"
        caption = f"{COLOURS[c]} {SHAPES[s]}, {SIZES[z]}, placed {POSITIONS[p]}"  # a second frozen text view
        row = {"id": f"r{i}", "text": text, "caption": caption, "sensor": f"arrays/{i}.npy",
               "sensor_b": f"arrays/{i}b.npy", "group": text, "label": COLOURS[c]}
        if sites:
            row["site"] = sites[i % len(sites)]
            row["group"] = f"{row['site']}:{text}"  # a group never spans institutions
            if row["site"] == val_only_site:
                row["split"] = "val"
        rows.append(row)
    if sites:  # explicit splits everywhere once any row has one
        from crossalign.data.splits import split_of

        for r in rows:
            r.setdefault("split", split_of(r["group"], seed))
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return out


def pair_run_config(data: Path, out: Path, views: tuple[str, ...] = ("text", "sensor"), **train: object):
    from crossalign.config import RunConfig

    all_views = {"text": {"column": "text"}, "caption": {"column": "caption", "encoder": "text:minilm", "modality": "text"},
                 "sensor": {"column": "sensor", "encoder": "sensor:mlp"},
                 "sensor_b": {"column": "sensor_b", "encoder": "sensor:mlp"}}
    t = {"data": str(data), "out": str(out), "epochs": 1, "batch_size": 32, "lr": 3e-4, "progress": False,
         "patience": 0}
    t.update(train)
    return RunConfig.from_dict({"model": {"views": [dict(all_views[v]) for v in views], "dim": 32,
                                          "head": {"hidden": 64}}, "train": t})
