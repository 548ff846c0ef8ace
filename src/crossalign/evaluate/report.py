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
    t = Table(title=f"test {metric} by method (same features, same splits)")
    t.add_column("method")
    for d in directions:
        t.add_column(d, justify="right")
    t.add_column("mean", justify="right")
    for name, m in results.items():
        vals = [m.get(f"{d}/{metric}", float("nan")) for d in directions]
        mean = sum(vals) / len(vals) if vals else float("nan")
        t.add_row(name, *[f"{v:.3f}" for v in vals], f"{mean:.3f}")
    return t


def print_tables(*tables: Table) -> None:
    con = Console()
    for t in tables:
        con.print(t)
