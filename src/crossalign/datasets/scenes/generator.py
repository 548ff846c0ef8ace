"""`make_scenes`: write the `scenes` data set (rendered shapes with English/Chinese captions, speech
and a radar-like signal) and return its manifest rows.

Captions name every object with all four attributes, so most captions are unique (instance-level
retrieval), and every row carries a hard negative: its caption with exactly one attribute of one
object swapped.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crossalign.data.splits import split_of
from crossalign.datasets.scenes.render import radar, render
from crossalign.datasets.scenes.scene import SceneObject, caption_en, caption_zh, hard_negative, sample_scene

__all__ = ["make_scenes"]


def _group(objs: list[SceneObject]) -> str:
    return hashlib.sha1(caption_en(objs).encode()).hexdigest()[:12]


def make_scenes(out: Path, n: int = 2000, seed: int = 0, audio: bool = True,
                progress: Callable[[int], Any] | None = None) -> list[dict[str, Any]]:
    """Write images/, audio/, radar/ under `out` and return manifest rows (the caller writes them)."""
    from crossalign.datasets.speech import VOICES, speak_many

    for sub in ("images", "audio", "radar"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows, jobs = [], []
    reported = 0
    for i in range(n):
        rng = random.Random(f"scenes:{seed}:{i}")  # per-item stream: item i is the same for any n
        objs = sample_scene(rng)
        neg, attr = hard_negative(objs, rng)
        item_id = f"scene-{i:06d}"
        img_rel, wav_rel, rad_rel = f"images/{item_id}.png", f"audio/{item_id}.flac", f"radar/{item_id}.npy"
        render(objs, rng).save(out / img_rel, optimize=False)
        np.save(out / rad_rel, radar(objs, rng))
        text = caption_en(objs)
        voice, speed = rng.choice(VOICES), rng.randint(140, 190)
        largest = max(objs, key=lambda o: (o.size == "large", -objs.index(o)))
        group = _group(objs)
        row = {"id": item_id, "image": img_rel, "text": text, "text_zh": caption_zh(objs),
               "audio": wav_rel if audio else None, "sensor": rad_rel, "text_neg": caption_en(neg), "neg_attr": attr,
               "group": group, "label": f"{largest.color} {largest.shape}", "split": split_of(group, seed),
               "voice": voice, "speed": speed, "objects": [asdict(o) | {"cell": list(o.cell)} for o in objs]}
        if audio:
            jobs.append((text, voice, speed, out / wav_rel))
        else:
            del row["audio"]  # no column rather than empty values that `data check` would flag
        rows.append(row)
        # Speech is the slowest part: synthesise in chunks of 64 (two espeak processes at a time)
        # as we go, so the progress bar tells the truth.
        if len(jobs) >= 64 or (i == n - 1 and jobs):
            speak_many(jobs)
            jobs = []
        if progress and not jobs:
            progress(len(rows) - reported)
            reported = len(rows)
    return rows
