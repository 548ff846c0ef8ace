"""The picture and the radar map of a scene. The radar sees range and azimuth (from position) and
echo strength/extent (from size and shape), never colour: a colour-blind sensor, as real radars are."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from crossalign.datasets.scenes.scene import COLORS, SceneObject

__all__ = ["render", "radar", "IMG", "RADAR_SHAPE"]

IMG = 128
RADAR_SHAPE = (32, 24)  # range bins x azimuth bins


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
