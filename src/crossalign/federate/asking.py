"""Server-side requests outside the rounds: one message to every site, the replies that succeeded.

The closed-form start's stages, per-pair routing's scores and the evaluation of a model the rounds did
not produce (the closed form, the mean of the last rounds) all go through `ask_sites`; byte counts and
failures land in the caller's `info` record, and too few answers raise `RoundFailed`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from crossalign.federate.config import FederationConfig
from crossalign.federate.params import record_bytes
from crossalign.federate.record import RoundFailed

__all__ = ["ask_sites", "sites_val"]


def ask_sites(grid: Grid, fed: FederationConfig, fed_json: str, stage: str, arrays: ArrayRecord, kind: str,
              on_receive: Callable[[int, str, Message], None] | None, info: dict[str, Any],
              views: list[str] | None = None, phase: str | None = None) -> list[Message]:
    """One closed-form stage (or an evaluation outside the rounds) at every site -> the replies that
    succeeded. `phase`: what `on_receive` is told (default `closed-form:STAGE`)."""
    nodes = sorted(grid.get_node_ids())
    config = {"federation": fed_json, "stage": stage, **({"views": ",".join(views)} if views else {})}
    content = {"config": ConfigRecord(config), "arrays": arrays}
    msgs = [Message(RecordDict(content), dst_node_id=n, message_type=kind) for n in nodes]
    replies = list(grid.send_and_receive(msgs, timeout=fed.timeout))
    for r in replies if on_receive is not None else ():
        on_receive(0, phase or f"closed-form:{stage}", r)
    ok = [r for r in replies if not r.has_error()]
    info["bytes_sent"] = info.get("bytes_sent", 0) + record_bytes(arrays) * len(msgs)
    info["bytes_received"] = info.get("bytes_received", 0) + sum(
        (record_bytes(r.content["arrays"]) if r.content.array_records else 0)
        + 8 * sum(len(m) for m in r.content.metric_records.values()) for r in ok)
    info.setdefault("failures", {})[stage] = len(replies) - len(ok)
    if len(ok) < fed.required_per_round():
        reasons = "; ".join(str(r.error.reason).strip().splitlines()[-1] for r in replies if r.has_error())
        raise RoundFailed(f"{phase or f'closed-form {stage}'}: {len(ok)} site(s) answered, the minimum is "
                          f"{fed.required_per_round()} ({reasons})")
    return ok


def sites_val(evals: list[Message]) -> float:
    """The sites' evaluation replies -> val mean R@1 over them, weighted by their validation rows."""
    vals = [next(iter(r.content.metric_records.values())) for r in evals]
    vals.sort(key=lambda m: float(m.get("site", -1.0)))  # a fixed summation order, whatever order replies came in
    return float(np.average([float(m["val-R@1"]) for m in vals],  # type: ignore[arg-type]
                            weights=[float(m["num-examples"]) for m in vals]))  # type: ignore[arg-type]
