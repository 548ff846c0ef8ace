"""`crossalign demo`: the main job on the built-in scenes data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def demo_cmd(out: Annotated[Path, typer.Option(help="demo folder (data/ and run/ inside)")] = Path("runs/demo"),
             n: Annotated[int, typer.Option(help="scenes to generate")] = 2000,
             epochs: Annotated[Optional[int], typer.Option(help="override training epochs")] = None,
             baselines: Annotated[bool, typer.Option(help="also fit CCA / Procrustes / random baselines")] = True,
             seed: Annotated[int, typer.Option(help="random seed")] = 0) -> None:
    """Make scenes (if absent), extract image/text/audio/sensor features, train, evaluate, plot."""
    from crossalign.recipes.demo import run_demo

    run_demo(out, n=n, epochs=epochs, baselines=baselines, seed=seed, log=typer.echo)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
