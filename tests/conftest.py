"""Shared fixtures: a small generated scenes set and a quickly trained run, built once per session.

Everything runs offline with the real packaged encoders; the feature cache lives in a temporary
folder so tests never touch the user's cache.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crossalign-cache")
    os.environ["CROSSALIGN_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def scenes_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 scenes with images, captions (en/zh), speech and radar: `<dir>/manifest.jsonl`."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing (scripts/setup.sh installs it)")
    from crossalign.datasets.registry import make_dataset

    out = tmp_path_factory.mktemp("scenes")
    make_dataset("scenes", out, n=80, seed=3)
    return out


SMALL_VIEWS = [
    {"column": "image", "options": {"grid": 2, "color": True, "size": 128}},
    {"column": "text"},
    {"column": "audio"},
    {"column": "sensor", "encoder": "sensor:conv2d"},
]


def small_config(data: Path, out: Path, **train: object):
    from crossalign.config import RunConfig

    t = {"data": str(data), "out": str(out), "epochs": 3, "batch_size": 32, "progress": False, "patience": 0}
    t.update(train)
    return RunConfig.from_dict({"model": {"views": [dict(v) for v in SMALL_VIEWS], "dim": 32,
                                          "head": {"hidden": 64}}, "train": t})


@pytest.fixture(scope="session")
def tiny_run(scenes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder trained for 3 epochs on `scenes_small` (image, text, audio, sensor)."""
    from crossalign.recipes.align import train

    out = tmp_path_factory.mktemp("run")
    # One shared space (train.route and train.hubness off): the rooms that use this run test the
    # single-space model; routed and hubness-corrected runs are tested in tests/test_routing.py and
    # tests/test_hubness.py.
    run, _ = train(small_config(scenes_small, out, route="off", hubness="off"), resume=False, progress=False)
    return run
