"""Terminal tables for metrics dicts (rich)."""

from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.table import Table

__all__ = ["retrieval_table", "view_table", "methods_table", "print_tables"]


def retrieval_table(m: dict[str, float], columns: Sequence[str], metric: str = "R@1", title: str = "") -> Table:
    t = Table(title=title or f"retrieval {metric} (row: query, column: target)")
    t.add_column("query \\ target")
    for c in columns:
        t.add_column(c, justify="right")
    for a in columns:
        t.add_row(a, *["—" if a == b else f"{m.get(f'{a}->{b}/{metric}', float('nan')):.3f}" for b in columns])
    return t


def view_table(m: dict[str, float], columns: Sequence[str]) -> Table:
    keys = [("zeroshot_acc", "zero-shot"), ("hardneg_acc", "hard-neg"), ("hardneg_acc/color", "hard-neg colour"),
            ("probe_acc", "linear probe"), ("uniformity", "uniformity")]
    present = [(k, n) for k, n in keys if any(f"{c}/{k}" in m for c in columns)]
    t = Table(title="per view")
    t.add_column("view")
    for _, n in present:
        t.add_column(n, justify="right")
    for c in columns:
        t.add_row(c, *[f"{m[f'{c}/{k}']:.3f}" if f"{c}/{k}" in m else "—" for k, _ in present])
    return t


def methods_table(results: dict[str, dict[str, float]], directions: Sequence[str], metric: str = "R@1") -> Table:
    """Directions as rows, methods as columns (fits a terminal however many views there are)."""
    t = Table(title=f"test {metric} by method (same features, same splits)")
    t.add_column("direction")
    for name in results:
        t.add_column(name, justify="right")
    for d in directions:
        t.add_row(d, *[f"{m.get(f'{d}/{metric}', float('nan')):.3f}" for m in results.values()])
    means = [sum(m.get(f"{d}/{metric}", float("nan")) for d in directions) / max(len(directions), 1)
             for m in results.values()]
    t.add_row("mean", *[f"{v:.3f}" for v in means], style="bold")
    return t


def print_tables(*tables: Table) -> None:
    con = Console()
    for t in tables:
        con.print(t)
