"""Whether a saved folder may make us reach the Hugging Face hub.

A run or bridge folder names its models (`hf:<id or folder>`). A folder is data a user may have
received from someone else: loading it must not download anything unless the user said so, so a
hub id there (not a local folder) is refused unless CROSSALIGN_ALLOW_NETWORK=1. Weights are always
loaded with `use_safetensors=True` (never a pickled `pytorch_model.bin`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

__all__ = ["NETWORK_ENV", "network_allowed", "is_hub_id", "refuse_hub_ids"]

NETWORK_ENV = "CROSSALIGN_ALLOW_NETWORK"


def network_allowed() -> bool:
    return os.environ.get(NETWORK_ENV, "").strip().lower() in ("1", "true", "yes")


def is_hub_id(ref: str) -> bool:
    """`hf:` reference that is not a local folder (so loading it would go to the hub)."""
    return not (ref.startswith(("/", ".", "~")) or Path(ref).expanduser().exists())


def refuse_hub_ids(names: Iterable[str], where: str) -> None:
    """Raise PermissionError when `where` (a run/bridge file) names an `hf:` hub id and the user has
    not allowed network access."""
    if network_allowed():
        return
    for name in names:
        if isinstance(name, str) and name.startswith("hf:") and is_hub_id(name[3:]):
            raise PermissionError(
                f"{where} names the Hugging Face hub model '{name[3:]}': loading it would download from "
                f"the network. Set {NETWORK_ENV}=1 if you trust this folder, or point it at a local copy"
            )
