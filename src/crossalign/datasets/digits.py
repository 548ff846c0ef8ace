"""`digits`: scikit-learn's 8x8 digit images, captions in English and Chinese, the spoken digit."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from crossalign.data.splits import split_of

__all__ = ["make_digits", "DIGIT_WORDS", "DIGIT_ZH"]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_ZH = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九")


def make_digits(out: Path, n: int = 1797, seed: int = 0, audio: bool = True,
                progress: Callable[[int], Any] | None = None) -> list[dict[str, Any]]:
    from sklearn.datasets import load_digits

    from crossalign.datasets.speech import VOICES, speak_many

    d = load_digits()
    n = min(n, len(d.images))
    order = np.random.default_rng(seed).permutation(len(d.images))[:n]
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rows, jobs = [], []
    for k, idx in enumerate(order):
        rng = random.Random(f"digits:{seed}:{idx}")
        y = int(d.target[idx])
        item_id = f"digit-{int(idx):04d}"
        pix = (255 - d.images[idx] / 16.0 * 255).astype(np.uint8)  # dark ink on white
        Image.fromarray(pix, mode="L").resize((64, 64), Image.BICUBIC).save(out / f"images/{item_id}.png")
        voice, speed = rng.choice(VOICES), rng.randint(130, 190)
        rows.append({"id": item_id, "image": f"images/{item_id}.png", "text": f"the digit {DIGIT_WORDS[y]}",
                     "text_zh": f"数字{DIGIT_ZH[y]}", "audio": f"audio/{item_id}.flac" if audio else None,
                     "group": DIGIT_WORDS[y], "label": DIGIT_WORDS[y], "split": split_of(item_id, seed),
                     "voice": voice, "speed": speed})
        if audio:
            jobs.append((DIGIT_WORDS[y], voice, speed, out / f"audio/{item_id}.flac"))
        else:
            del rows[-1]["audio"]  # no column rather than empty values that `data check` would flag
        if progress:
            progress(1)
    if audio:
        speak_many(jobs)
    return rows
