"""What an explanation is made of, per modality: words, image cells, audio time windows, sensor cells.

Each modality turns one raw item into `Units`: a signal tensor `x` (1, ...), a `mask` of the same
shape naming the unit of every element (Captum's `feature_mask`), a `baseline` (what a removed
unit becomes: the image's background colour, silence, the sensor's median level, a dropped word)
and `to_raw`, which turns a batch of (possibly perturbed) signals back into raw items the run's
encoder reads. Occlusion, integrated gradients and the deletion test all work on this one form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from crossalign.modalities.audio import Audio

__all__ = ["Units", "make_units", "UNIT_MAKERS", "remove_units"]


@dataclass
class Units:
    kind: str  # "word" | "cell" | "window"
    labels: list[str]  # one per unit, in unit order
    x: torch.Tensor  # (1, ...) the signal attributions are computed on
    mask: torch.Tensor  # (1, ...) int64 unit index of every element of x
    baseline: torch.Tensor  # (1, ...) the signal with every unit removed
    to_raw: Callable[[torch.Tensor], list[Any]]  # (B, ...) signals -> raw items for the encoder
    geometry: dict[str, Any] = field(default_factory=dict)  # what renderers need (grid, seconds, ...)

    @property
    def n(self) -> int:
        return len(self.labels)


def remove_units(u: Units, which: np.ndarray) -> torch.Tensor:
    """The signal (1, ...) with the units listed in `which` replaced by the baseline."""
    drop = torch.isin(u.mask, torch.as_tensor(np.asarray(which, dtype=np.int64)))
    return torch.where(drop, u.baseline, u.x)


def _text(raw: str, **_: Any) -> Units:
    words = str(raw).split()
    if not words:
        raise ValueError("cannot explain an empty text")
    n = len(words)

    def to_raw(g: torch.Tensor) -> list[str]:  # (B, n) gates: a word stays when its gate is on
        return [" ".join(w for w, on in zip(words, row.tolist()) if on > 0.5) for row in g]

    return Units(
        "word",
        words,
        torch.ones(1, n),
        torch.arange(n).unsqueeze(0),
        torch.zeros(1, n),
        to_raw,
        {"words": words},
    )


def _grid_mask(h: int, w: int, rows: int, cols: int) -> torch.Tensor:
    r = torch.clamp(torch.arange(h) * rows // h, max=rows - 1)  # (h,) cell row of every pixel row
    c = torch.clamp(torch.arange(w) * cols // w, max=cols - 1)
    return r[:, None] * cols + c[None, :]  # (h, w)


def _cell_labels(rows: int, cols: int) -> list[str]:
    return [f"r{i}c{j}" for i in range(rows) for j in range(cols)]


def _background(img: Image.Image, fill: str, seed: int) -> Image.Image:
    """What a removed cell shows, at the image's own size: its median colour (the background of most
    object photographs, and exactly that in `scenes`) — flat (`median`) or with the image's own pixel
    noise (`noise`: per channel 1.4826 x the median absolute deviation, the background grain), so a
    removed cell looks like background to the tower rather than like an unnaturally flat patch."""
    a = np.asarray(img, dtype=np.float32)  # (h, w, 3)
    med = np.median(a.reshape(-1, 3), 0)  # (3,)
    out = np.broadcast_to(med, a.shape).copy()
    if fill == "noise":
        sd = 1.4826 * np.median(np.abs(a - med).reshape(-1, 3), 0)  # (3,) robust: objects are outliers
        out += np.random.default_rng(seed).normal(0.0, 1.0, a.shape).astype(np.float32) * sd
    elif fill != "median":
        raise ValueError(f"unknown image fill '{fill}' (median, noise)")
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))


def _image(raw: Image.Image, grid: int = 3, size: int | None = None, fill: str = "noise", **_: Any) -> Units:
    """Cells of a grid x grid layout; a removed cell shows the image's background (`_background`),
    made at the image's own size and resized like the image, so it is what the tower would see."""
    img = raw.convert("RGB")
    bg = _background(img, fill, seed=0)
    if size:  # work at the encoder's input size, so perturbed pixels are exactly what it sees
        img, bg = img.resize((size, size), Image.BICUBIC), bg.resize((size, size), Image.BICUBIC)

    def tensor(im: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, H, W)

    arr, base = tensor(img), tensor(bg)  # uint8-representable, so to_raw round-trips exactly
    _, h, w = arr.shape
    g = max(1, int(grid))
    cells = _grid_mask(h, w, g, g)  # (H, W)

    def to_raw(xb: torch.Tensor) -> list[Image.Image]:  # (B, 3, H, W) in [0, 1]
        a = (xb.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(v) for v in a]

    return Units(
        "cell",
        _cell_labels(g, g),
        arr.unsqueeze(0),
        cells.expand(3, h, w).unsqueeze(0).clone(),
        base.unsqueeze(0).contiguous(),
        to_raw,
        {"grid": [g, g], "size": [w, h], "fill": fill},
    )


def _audio(raw: Audio, window_s: float = 0.25, max_windows: int = 40, **_: Any) -> Units:
    wav = np.asarray(raw.wav, dtype=np.float32)
    n_samp = len(wav)
    if n_samp == 0:
        raise ValueError("cannot explain an empty audio clip")
    win = max(1, int(round(window_s * raw.sr)))
    if math.ceil(n_samp / win) > max_windows:  # long clips: wider windows, a readable number of bars
        win = math.ceil(n_samp / max_windows)
    n = math.ceil(n_samp / win)
    mask = torch.clamp(torch.arange(n_samp) // win, max=n - 1).unsqueeze(0)  # (1, N)
    labels = [f"{i * win / raw.sr:.2f}-{min(n_samp, (i + 1) * win) / raw.sr:.2f}s" for i in range(n)]
    sr = raw.sr

    def to_raw(xb: torch.Tensor) -> list[Audio]:
        return [Audio(v.astype(np.float32), sr) for v in xb.detach().cpu().numpy()]

    return Units(
        "window",
        labels,
        torch.from_numpy(wav).unsqueeze(0),
        mask,
        torch.zeros(1, n_samp),
        to_raw,
        {"window_s": win / sr, "seconds": n_samp / sr, "sr": sr},
    )


def _sensor(raw: np.ndarray, cells: tuple[int, int] | int | None = None, **_: Any) -> Units:
    """2-D arrays: a rows x cols grid of blocks; 1-D: windows; a removed unit is set to the array's
    median (the clutter floor of a radar map, the resting level of a time series)."""
    arr = np.asarray(raw, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] <= 4:  # (channels, H, W): cells over the map, all channels at once
        h, w = arr.shape[1:]
    elif arr.ndim in (1, 2):
        h, w = (1, arr.shape[0]) if arr.ndim == 1 else arr.shape
    else:
        raise ValueError(f"cannot explain a sensor array of shape {arr.shape} (1-D, 2-D or (C, H, W))")
    if arr.ndim == 1:
        rows, cols = 1, min(w, int(cells) if isinstance(cells, int) else 8)
    else:
        rows, cols = (cells, cells) if isinstance(cells, int) else tuple(cells or (4, 4))
        rows, cols = min(h, int(rows)), min(w, int(cols))
    m = _grid_mask(h, w, rows, cols)  # (h, w)
    m = m.reshape(-1) if arr.ndim == 1 else (m.expand(arr.shape[0], h, w) if arr.ndim == 3 else m)
    x = torch.from_numpy(arr)
    labels = [f"w{j}" for j in range(cols)] if arr.ndim == 1 else _cell_labels(rows, cols)

    def to_raw(xb: torch.Tensor) -> list[np.ndarray]:
        return [v for v in xb.detach().cpu().numpy().astype(np.float32)]

    base = torch.full_like(x, float(np.median(arr)))
    return Units(
        "window" if arr.ndim == 1 else "cell",
        labels,
        x.unsqueeze(0),
        m.unsqueeze(0).clone(),
        base.unsqueeze(0),
        to_raw,
        {"grid": [rows, cols], "shape": list(arr.shape)},
    )


# Modality -> its unit maker (each takes the raw item and ignores the options meant for others); a
# plug-in modality adds its own here, e.g. 1-D arrays can reuse the sensor windows.
UNIT_MAKERS: dict[str, Callable[..., Units]] = {
    "text": _text,
    "image": _image,
    "audio": _audio,
    "sensor": _sensor,
}


def make_units(modality: str, raw: Any, **opts: Any) -> Units:
    try:
        maker = UNIT_MAKERS[modality]
    except KeyError:
        raise ValueError(f"no explanation units for modality '{modality}'") from None
    return maker(raw, **opts)
