"""Pictures and terminal text of an explanation: coloured words, heatmaps over images and radar maps,
bars over waveforms. Positive attributions (the unit makes the items more similar) are green, negative red."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from crossalign.explain.core import PairExplanation, SideExplanation  # noqa: E402

__all__ = ["rich_side", "print_explanation", "plot_explanation", "plot_side"]

CMAP = "RdYlGn"


def _scale(values: list[float]) -> float:
    return max(1e-12, float(np.max(np.abs(values)))) if values else 1.0


def rich_side(side: SideExplanation) -> Any:
    """A rich `Text` of the side's units with background colour by attribution (words inline)."""
    from rich.text import Text

    t = Text()
    s = _scale(side.values)
    for lbl, v in zip(side.labels, side.values):
        a = min(1.0, abs(v) / s)
        lo = int(255 * (1 - 0.75 * a))
        bg = f"rgb({lo},255,{lo})" if v >= 0 else f"rgb(255,{lo},{lo})"
        t.append(lbl if side.unit_kind == "word" else f"{lbl}:{v:+.3f}", style=f"black on {bg}")
        t.append(" ")
    return t


def print_explanation(ex: PairExplanation, top: int = 3) -> None:
    from rich.console import Console

    con = Console()
    con.print(f"similarity [bold]{ex.score:+.4f}[/bold]")
    for side in ex.sides:
        gap = (
            ""
            if side.completeness_gap is None
            else (
                f", completeness gap {side.completeness_gap:.2e} ({100 * side.completeness_gap / max(abs(ex.score), 1e-9):.2f} % of the score)"
            )
        )
        con.print(
            f"[bold]{side.column}[/bold] ({side.modality}, {len(side.labels)} {side.unit_kind}s): "
            f"method {side.method} — {side.why}; with every {side.unit_kind} removed the score is "
            f"{side.baseline_score:+.4f}{gap}"
        )
        con.print(rich_side(side))
        con.print("  top: " + ", ".join(f"{lbl} {v:+.4f}" for lbl, v in side.top(top)))


def _fmt(v: float, side: SideExplanation) -> str:
    digits = max(2, 1 - int(np.floor(np.log10(_scale(side.values)))))  # two significant digits of the largest
    return f"{v:+.{digits}f}"


def _cell_map(side: SideExplanation) -> np.ndarray:
    rows, cols = side.geometry["grid"]
    return np.asarray(side.values, dtype=np.float64).reshape(rows, cols)


def _heat(ax: Any, side: SideExplanation, background: np.ndarray, norm: TwoSlopeNorm, **kw: Any) -> Any:
    rows, cols = side.geometry["grid"]
    h, w = background.shape[:2]
    ax.imshow(background, **kw)
    im = ax.imshow(
        _cell_map(side),
        cmap=CMAP,
        norm=norm,
        alpha=0.45,
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        interpolation="nearest",
    )
    if rows * cols <= 64:
        for i in range(rows):
            for j in range(cols):
                ax.text(
                    (j + 0.5) * w / cols - 0.5,
                    (i + 0.5) * h / rows - 0.5,
                    _fmt(_cell_map(side)[i, j], side),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black",
                )
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def plot_side(ax: Any, side: SideExplanation) -> None:
    s = _scale(side.values)
    norm = TwoSlopeNorm(vmin=-s, vcenter=0.0, vmax=s)
    cmap = plt.get_cmap(CMAP)
    title = f"{side.column}: {side.method}"
    if side.modality == "image" and side.units is not None:
        img = side.units.x[0].permute(1, 2, 0).numpy()  # (H, W, 3) as the tower saw it
        _heat(ax, side, img, norm)
    elif side.unit_kind == "cell" and side.units is not None:
        arr = side.units.x[0].numpy()
        arr = arr.mean(0) if arr.ndim == 3 else arr
        _heat(ax, side, arr, norm, cmap="gray", aspect="auto")
    elif side.modality == "audio" and side.units is not None:
        wav, sr, win = side.units.x[0].numpy(), side.geometry["sr"], side.geometry["window_s"]
        t = np.arange(len(wav)) / sr
        for i, v in enumerate(side.values):
            ax.axvspan(i * win, min((i + 1) * win, t[-1]), color=cmap(norm(v)), alpha=0.6, lw=0)
        ax.plot(t, wav, color="black", lw=0.4)
        ax.set(xlabel="seconds", yticks=[], xlim=(0, t[-1]))
    elif side.unit_kind == "window" and side.units is not None:  # 1-D sensor signal
        sig = side.units.x[0].numpy()
        cols = side.geometry["grid"][1]
        for j, v in enumerate(side.values):
            ax.axvspan(j * len(sig) / cols, (j + 1) * len(sig) / cols, color=cmap(norm(v)), alpha=0.6, lw=0)
        ax.plot(sig, color="black", lw=0.6)
    else:  # words: coloured boxes, wrapped
        ax.axis("off")
        renderer = ax.figure.canvas.get_renderer()
        box = ax.get_window_extent(renderer)
        x, y = 0.0, 0.95
        for lbl, v in zip(side.labels, side.values):
            t = ax.text(
                x,
                y,
                lbl,
                fontsize=10,
                transform=ax.transAxes,
                va="top",
                bbox={"facecolor": cmap(norm(v)), "edgecolor": "none", "pad": 1.5},
            )
            w = (
                t.get_window_extent(renderer).width * 0.8 + 6
            ) / box.width  # measured, so words never overlap
            if x > 0 and x + w > 1.0:
                x, y = 0.0, y - 0.12
                t.set_position((x, y))
            x += w
    ax.set_title(title, fontsize=9)


def plot_explanation(ex: PairExplanation, out: str | Path, title: str = "") -> Path:
    fig, axes = plt.subplots(1, len(ex.sides), figsize=(4.2 * len(ex.sides), 3.6), squeeze=False)
    for ax, side in zip(axes[0], ex.sides):
        plot_side(ax, side)
    fig.suptitle(title or f"similarity {ex.score:+.3f} (green: raises it, red: lowers it)", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
