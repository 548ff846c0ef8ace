"""Items named on the command line, for any registered modality.

Every command that takes items (`search`, `explain`, `task predict`, `ask`) accepts the repeatable
`--input MODALITY=VALUE` (`--input image=cat.png`, `--input vector=v.npy`), so a new modality
needs no new flag; the familiar `--text/--image/--audio/--sensor` flags stay as shorthands.
Values of inline modalities (text) are the item; the others are file paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["InputOpt", "gather_inputs", "shorthand_names"]

InputOpt = Annotated[Optional[list[str]], typer.Option(
    "--input", help="MODALITY=VALUE, repeatable: an item of any registered modality, "
                    "e.g. image=cat.png (text is inline, other values are files)")]


def shorthand_names(names: list[str]) -> str:
    """["text", "image"] -> "--text or --image" (for usage messages)."""
    flags = [f"--{n}" for n in names]
    return ", ".join(flags[:-1]) + f" or {flags[-1]}" if len(flags) > 1 else "".join(flags)


def gather_inputs(flags: dict[str, Any], inputs: list[str] | None,
                  allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Shorthand flags ({modality: value or None}) plus `--input` values -> {modality: value}, with
    text as a string and file modalities as Paths. A modality given twice or one not registered (or
    not in `allowed`) is a usage error."""
    from crossalign.modalities import modality, modality_names

    known = allowed if allowed is not None else modality_names()
    given = {m: v for m, v in flags.items() if v is not None}
    for spec in inputs or []:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise typer.BadParameter(f"'{spec}': expected MODALITY=VALUE", param_hint="--input")
        if name not in known:
            raise typer.BadParameter(f"'{name}' is not one of {', '.join(known)}", param_hint="--input")
        if name in given:
            raise typer.BadParameter(f"{name} given twice", param_hint="--input")
        given[name] = value
    return {m: str(v) if modality(m).inline else Path(v) for m, v in given.items()}
