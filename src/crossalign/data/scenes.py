"""`scenes`: rendered shapes with English/Chinese captions, speech and a radar-like signal.

Each item is 1-3 objects (shape, colour, size) in distinct cells of a 3x3 grid. Captions name
every object with all four attributes, so most captions are unique (instance-level retrieval),
and every row carries a hard negative: its caption with exactly one attribute of one object
swapped. The radar map sees range and azimuth (from position) and echo strength/extent (from size
and shape), never colour: a colour-blind sensor, as real radars are.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw

from crossalign.data.splits import split_of

__all__ = ["SceneObject", "sample_scene", "caption_en", "caption_zh", "render", "radar", "hard_negative",
           "COLORS", "SHAPES", "SIZES", "POSITIONS", "make_scenes"]

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
          "yellow": (235, 200, 30), "purple": (140, 60, 180), "orange": (240, 130, 20)}
COLORS_ZH = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色"}
SHAPES = ("circle", "square", "triangle", "star")
SHAPES_ZH = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形"}
SIZES = ("small", "large")
SIZES_ZH = {"small": "小的", "large": "大的"}
# (row, col) -> phrase; row 0 is the top.
POSITIONS = {(0, 0): "top left", (0, 1): "top", (0, 2): "top right", (1, 0): "left", (1, 1): "center",
             (1, 2): "right", (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right"}
POSITIONS_ZH = {(0, 0): "左上方", (0, 1): "上方", (0, 2): "右上方", (1, 0): "左侧", (1, 1): "中间",
                (1, 2): "右侧", (2, 0): "左下方", (2, 1): "下方", (2, 2): "右下方"}
ATTRIBUTES = ("color", "shape", "size", "position")
IMG = 128
RADAR_SHAPE = (32, 24)  # range bins x azimuth bins


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    cell: tuple[int, int]

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]


def sample_scene(rng: random.Random) -> list[SceneObject]:
    n = rng.choice((1, 2, 2, 3, 3))
    cells = rng.sample(sorted(POSITIONS), n)
    objs = [SceneObject(rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(SIZES), c) for c in cells]
    return sorted(objs, key=lambda o: o.cell)  # reading order: captions list objects top-left first


def _phrase(o: SceneObject) -> str:
    where = "in the center" if o.cell == (1, 1) else (f"on the {o.position}" if o.cell[0] == 1 else f"at the {o.position}")
    return f"a {o.size} {o.color} {o.shape} {where}"


def caption_en(objs: list[SceneObject]) -> str:
    parts = [_phrase(o) for o in objs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption_zh(objs: list[SceneObject]) -> str:
    return "，".join(f"{POSITIONS_ZH[o.cell]}有一个{SIZES_ZH[o.size]}{COLORS_ZH[o.color]}{SHAPES_ZH[o.shape]}" for o in objs)


def hard_negative(objs: list[SceneObject], rng: random.Random) -> tuple[list[SceneObject], str]:
    """Swap exactly one attribute of one object; the result is a different, valid scene."""
    i = rng.randrange(len(objs))
    o = objs[i]
    attr = rng.choice(ATTRIBUTES)
    if attr == "color":
        new = SceneObject(o.shape, rng.choice([c for c in COLORS if c != o.color]), o.size, o.cell)
    elif attr == "shape":
        new = SceneObject(rng.choice([s for s in SHAPES if s != o.shape]), o.color, o.size, o.cell)
    elif attr == "size":
        new = SceneObject(o.shape, o.color, "large" if o.size == "small" else "small", o.cell)
    else:
        free = [c for c in POSITIONS if c not in {p.cell for p in objs}]
        new = SceneObject(o.shape, o.color, o.size, rng.choice(free))
    out = sorted(objs[:i] + [new] + objs[i + 1:], key=lambda p: p.cell)
    return out, attr


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)]
    pts = []
    for k in range(10):  # star: alternate outer/inner radius
        a = -np.pi / 2 + k * np.pi / 5
        rr = r if k % 2 == 0 else r * 0.45
        pts.append((cx + rr * np.cos(a), cy + rr * np.sin(a)))
    return pts


def render(objs: list[SceneObject], rng: random.Random, size: int = IMG) -> Image.Image:
    s = 2  # draw at 2x and downsample: cheap anti-aliasing
    W = size * s
    base = 225 + rng.randint(-15, 15)
    img = Image.new("RGB", (W, W), (base, base, base - rng.randint(0, 10)))
    d = ImageDraw.Draw(img)
    cell = W / 3
    for o in objs:
        r = (0.17 if o.size == "small" else 0.36) * cell
        cx = (o.cell[1] + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        cy = (o.cell[0] + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        col = tuple(int(np.clip(v + rng.randint(-18, 18), 0, 255)) for v in COLORS[o.color])
        if o.shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        elif o.shape == "square":
            q = r * 0.88
            d.rectangle([cx - q, cy - q, cx + q, cy + q], fill=col)
        else:
            d.polygon(_polygon(o.shape, cx, cy, r), fill=col)
    img = img.resize((size, size), Image.LANCZOS)
    noise = np.asarray(img, dtype=np.int16) + np.random.default_rng(rng.getrandbits(32)).integers(-6, 7, (size, size, 3))
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))


_RCS = {"circle": 0.7, "square": 1.0, "triangle": 0.5, "star": 0.85}  # echo strength by shape
_SPREAD = {"circle": 0.8, "square": 1.2, "triangle": 0.9, "star": 1.5}  # azimuth extent by shape


def radar(objs: list[SceneObject], rng: random.Random) -> np.ndarray:
    """Range x azimuth power map (dB-like) seen from a sensor below the scene's bottom centre."""
    nr, na = RADAR_SHAPE
    rr, aa = np.meshgrid(np.arange(nr), np.arange(na), indexing="ij")
    npr = np.random.default_rng(rng.getrandbits(32))
    power = npr.rayleigh(0.08, RADAR_SHAPE)  # clutter
    for o in objs:
        x = (o.cell[1] + 0.5 + rng.uniform(-0.08, 0.08)) / 3 - 0.5  # -0.5..0.5, right positive
        y = 1.15 - (o.cell[0] + 0.5 + rng.uniform(-0.08, 0.08)) / 3  # distance ahead of the sensor
        rng_bin = np.hypot(x, y) / 1.35 * (nr - 1)
        az_bin = (np.arctan2(x, y) / np.radians(50) * 0.5 + 0.5) * (na - 1)
        big = o.size == "large"
        amp = _RCS[o.shape] * (2.0 if big else 0.9)
        sr, sa = (1.4 if big else 0.8), _SPREAD[o.shape] * (1.6 if big else 0.9)
        power += amp * np.exp(-((rr - rng_bin) ** 2 / (2 * sr ** 2) + (aa - az_bin) ** 2 / (2 * sa ** 2)))
    power *= npr.normal(1.0, 0.05, RADAR_SHAPE)  # speckle
    return (10 * np.log10(power ** 2 + 1e-3)).astype(np.float32)


def _group(objs: list[SceneObject]) -> str:
    return hashlib.sha1(caption_en(objs).encode()).hexdigest()[:12]


def make_scenes(out: Path, n: int = 2000, seed: int = 0, audio: bool = True,
                progress: Callable[[int], Any] | None = None) -> list[dict[str, Any]]:
    """Write images/, audio/, radar/ under `out` and return manifest rows (the caller writes them)."""
    from crossalign.data.speech import VOICES, speak_many

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
