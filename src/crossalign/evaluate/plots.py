"""Pictures people would rather see than read: training curves, a similarity matrix, a gallery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_curves", "plot_similarity", "plot_gallery", "plot_run"]


def plot_curves(metrics_jsonl: Path, out: Path) -> Path:
    recs = [json.loads(x) for x in metrics_jsonl.read_text().splitlines() if x.strip()]
    ep = [r["epoch"] for r in recs]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for k in sorted({k for r in recs for k in r if k.startswith("train/loss")}):
        ax[0].plot(ep, [r.get(k, np.nan) for r in recs], label=k.removeprefix("train/"), lw=2 if k == "train/loss" else 1)
    ax[0].set(title="training loss", xlabel="epoch")
    ax[0].legend(fontsize=7)
    r1 = sorted({k for r in recs for k in r if k.startswith("val/") and k.endswith("/R@1")})
    # a run without retrieval metrics (e.g. a bridge) validates a loss: show that instead of an empty panel
    keys = r1 or sorted({k for r in recs for k in r if k.startswith("val/") and "loss" in k})
    for k in keys:
        ax[1].plot(ep, [r.get(k, np.nan) for r in recs], label=k.removeprefix("val/"), lw=3 if "mean" in k else 1)
    ax[1].set(title="validation R@1" if r1 else "validation loss", xlabel="epoch",
              **({"ylim": (0, 1.02)} if r1 else {}))
    if keys:
        ax[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_similarity(a: np.ndarray, b: np.ndarray, out: Path, names: tuple[str, str], n: int = 24) -> Path:
    s = a[:n] @ b[:n].T
    fig, ax = plt.subplots(figsize=(5.5, 5))
    im = ax.imshow(s, cmap="viridis")
    ax.set(title=f"cosine similarity, first {len(s)} test pairs", xlabel=names[1], ylabel=names[0])
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_gallery(queries: Sequence[str], q: np.ndarray, d: np.ndarray, images: Sequence[Path], out: Path,
                 k: int = 5) -> Path:
    """Text queries (rows) with their top-k images; the true match is framed in green."""
    from PIL import Image

    rows = len(queries)
    fig, axes = plt.subplots(rows, k, figsize=(2.0 * k, 2.3 * rows), squeeze=False)
    for r, text in enumerate(queries):
        top = np.argsort(-(q[r] @ d.T))[:k]
        for j, idx in enumerate(top):
            ax = axes[r][j]
            ax.imshow(Image.open(images[idx]).convert("RGB"))
            ax.set_xticks([])
            ax.set_yticks([])
            color = "limegreen" if idx == r else "lightgray"
            for s in ax.spines.values():
                s.set_edgecolor(color)
                s.set_linewidth(4)
            ax.set_title(f"{float(q[r] @ d[idx]):.2f}", fontsize=8)
        axes[r][0].set_ylabel("\n".join(text[i:i + 28] for i in range(0, min(len(text), 84), 28)), fontsize=7)
    fig.suptitle("text -> image search (green frame: the true pair)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_run(run: Path, embeddings: dict[str, np.ndarray], table, specs: dict) -> list[Path]:  # type: ignore[no-untyped-def]
    """The run folder's pictures: curves.png (when it has metrics.jsonl), similarity.png (image x text
    when both exist, else the first two views) and gallery.png (text -> image search, when both exist).
    `table` is the evaluated split's FeatureTable, `specs` the model's encoder spec per column."""
    run = Path(run)
    out = []
    if (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip():
        out.append(plot_curves(run / "metrics.jsonl", run / "curves.png"))
    cols = list(embeddings)
    by = {m: [c for c in cols if specs[c].modality == m] for m in ("image", "text")}
    pair = (by["image"][0], by["text"][0]) if by["image"] and by["text"] else tuple(cols[:2])
    if len(pair) == 2:
        out.append(plot_similarity(embeddings[pair[0]], embeddings[pair[1]], run / "similarity.png", pair))  # type: ignore[arg-type]
    if by["image"] and by["text"]:
        img, txt = by["image"][0], by["text"][0]
        paths = [table.manifest.base_dir / str(p) for p in table.meta(img)]
        if all(p.is_file() for p in paths[:len(paths)]):
            out.append(plot_gallery([str(t) for t in table.meta(txt)[:4]], embeddings[txt][:4], embeddings[img],
                                    paths, run / "gallery.png"))
    return out
