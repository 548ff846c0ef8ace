"""Programs: one module per job, each run from a config, listed in one registry.

The CLI maps its commands onto these one to one (torchtune's recipe registry, litgpt's command
dict); the Python API calls the same functions. Entries are imported on first use, so listing
the registry (or starting the CLI) loads no torch model.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["RECIPES", "get_recipe"]

# name -> (module, function). Each function takes its typed config (and keyword options).
RECIPES: dict[str, tuple[str, str]] = {
    "align": ("crossalign.recipes.align", "train"),  # manifest -> features -> trained run folder
    "tune": ("crossalign.recipes.tune", "tune"),  # Optuna search on the validation split
    "benchmark": ("crossalign.recipes.benchmark", "benchmark"),  # crossalign vs baselines, same split
    "demo": ("crossalign.recipes.demo", "run_demo"),  # scenes end to end
    "task": ("crossalign.recipes.task", "train_task"),  # fusion + task heads
    "bridge": ("crossalign.recipes.bridge", "train_bridge"),  # language-model prefix projector
}


def get_recipe(name: str) -> Callable[..., Any]:
    try:
        module, attr = RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe '{name}'; known: {', '.join(RECIPES)}") from None
    return getattr(importlib.import_module(module), attr)
