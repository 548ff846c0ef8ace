"""Report pictures as base64 PNG data URIs (the page must work offline, from disk, with no other files)."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["png_uri", "fig_uri", "file_uri", "rank_histogram", "rounds_plot"]


def fig_uri(fig: Any, dpi: int = 90) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def png_uri(draw: Callable[[Path], Any]) -> str:
    """Run a plotting function that writes a PNG file (the evaluate.plots style) and inline its bytes."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "fig.png"
        draw(out)
        return file_uri(out)


def rank_histogram(ranks: dict[str, np.ndarray]) -> str:
    """Rank of the true match per query, one line per direction (log-spaced bins)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    top = max(int(r.max()) for r in ranks.values())
    bins = np.unique(np.geomspace(1, max(top, 2) + 1, 20).astype(int))
    for d, r in ranks.items():
        h, edges = np.histogram(r, bins=bins)
        ax.step(edges[:-1], h / len(r), where="post", label=d, lw=1.2)
    ax.set(
        xscale="log",
        xlabel="rank of the true match (1 = retrieved first)",
        ylabel="fraction of queries",
        title="rank histogram, test split",
    )
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig_uri(fig)


def rounds_plot(rounds: Sequence[dict[str, Any]]) -> str | None:
    done = [r for r in rounds if r.get("val_R@1") is not None]
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([r["round"] for r in done], [r["val_R@1"] for r in done], "k-o")
    ax.set(xlabel="round", ylabel="val R@1", title="federated rounds", ylim=(0, 1.02))
    fig.tight_layout()
    return fig_uri(fig)
