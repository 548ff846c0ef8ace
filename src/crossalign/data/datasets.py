"""Built-in paired datasets, keyed by name: `make_dataset("scenes", out, n, seed)`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from crossalign.data.manifest import write_manifest

__all__ = ["DATASETS", "make_dataset"]


def _scenes(out: Path, n: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    from crossalign.data.scenes import make_scenes

    return make_scenes(out, n=n, seed=seed, **kw)


def _digits(out: Path, n: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    from crossalign.data.digits import make_digits

    return make_digits(out, n=n, seed=seed, **kw)


DATASETS: dict[str, Callable[..., list[dict[str, Any]]]] = {"scenes": _scenes, "digits": _digits}
DEFAULT_N = {"scenes": 2000, "digits": 1797}


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
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"make {name}", unit="item")
    rows = DATASETS[name](out, n, seed, audio=audio, progress=bar.update if bar else None)
    if bar:
        bar.close()
    path = write_manifest(rows, out / "manifest.jsonl")
    (out / "dataset.json").write_text(json.dumps({"name": name, "n": n, "seed": seed}, indent=2))
    return path
