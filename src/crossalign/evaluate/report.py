"""Terminal tables for metrics dicts (rich)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

__all__ = ["retrieval_table", "view_table", "methods_table", "print_tables", "fmt", "winner_line",
           "routes_table"]


def fmt(m: dict[str, float], key: str) -> str:
    """`0.939`, or `0.939±0.012` when the dict holds a seed spread (`key/sd`); `—` when missing."""
    v = m.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    sd = m.get(f"{key}/sd")
    return f"{v:.3f}" if sd is None or m.get("seeds", 1) <= 1 else f"{v:.3f}±{sd:.3f}"


def retrieval_table(m: dict[str, float], columns: Sequence[str], metric: str = "R@1", title: str = "") -> Table:
    t = Table(title=title or f"retrieval {metric} (row: query, column: target)")
    t.add_column("query \\ target", no_wrap=True)
    for c in columns:
        t.add_column(c, justify="right", no_wrap=True)
    for a in columns:
        t.add_row(a, *["—" if a == b else fmt(m, f"{a}->{b}/{metric}") for b in columns])
    return t


def view_table(m: dict[str, float], columns: Sequence[str]) -> Table:
    keys = [("zeroshot_acc", "zero-shot"), ("hardneg_acc", "hard-neg"), ("hardneg_acc/color", "hard-neg colour"),
            ("probe_acc", "linear probe"), ("uniformity", "uniformity")]
    present = [(k, n) for k, n in keys if any(f"{c}/{k}" in m for c in columns)]
    t = Table(title="per view")
    t.add_column("view", no_wrap=True)
    for _, n in present:
        t.add_column(n, justify="right")
    for c in columns:
        t.add_row(c, *[fmt(m, f"{c}/{k}") for k, _ in present])
    return t


def methods_table(results: dict[str, dict[str, float]], directions: Sequence[str], metric: str = "R@1",
                  caption: str | None = None) -> Table:
    """Directions as rows, methods as columns. Names and numbers never wrap or truncate: a table wider
    than the terminal is printed whole (`print_tables` does not crop)."""
    t = Table(title=f"test {metric} by method (same features, same splits)", caption=caption)
    t.add_column("direction", no_wrap=True, min_width=max([len(d) for d in directions] + [9]))
    width = 11 if any(m.get("seeds", 1) > 1 for m in results.values()) else 5
    for name in results:
        t.add_column(name, justify="right", no_wrap=True, min_width=max(width, len(name)))
    for d in directions:
        t.add_row(d, *[fmt(m, f"{d}/{metric}") for m in results.values()])
    means: list[str] = []
    for m in results.values():
        vals = [m.get(f"{d}/{metric}") for d in directions]
        means.append("—" if any(v is None for v in vals) else f"{sum(vals) / len(vals):.3f}")  # type: ignore[arg-type]
    t.add_row("mean", *means, style="bold")
    return t


def winner_line(train_result: dict[str, Any]) -> str:
    """`crossalign = fine_tuned (val mean/R@1 0.951, +0.012 over closed_form)` from train_result.json."""
    c = train_result.get("candidates") or {}
    w = train_result.get("winner")
    if not c or w is None:
        return ""
    key = next(iter(c[w]))
    others = {k: v[key] for k, v in c.items() if k != w}
    tail = ""
    if others:
        runner = max(others, key=lambda k: others[k])
        tail = f", {c[w][key] - others[runner]:+.3f} over {runner}"
    cf = train_result.get("closed_form") or {}
    how = f"; closed form: {cf['method']} {cf['params']}" if cf else ""
    routed = ""
    if train_result.get("routed"):
        served = [f"{k.replace('|', '<->')}: {r['chosen']}" for k, r in (train_result.get("routes") or {}).items()
                  if r.get("chosen") != "joint"]
        v = next((x for k, x in train_result.items() if k.startswith("val_routed_")), None)
        routed = f"; routed per pair ({', '.join(served)}) -> val {v:.3f}" if v is not None else ""
    hub = [f"{k.replace('|', '<->')} {r['chosen'].replace('/', ' ')} ({r['gain']:+.3f})"
           for k, r in (train_result.get("hubness") or {}).items() if r.get("chosen") != "off"]
    hubs = f"; hubness corrected (CSLS, val R@1 gain): {', '.join(hub)}" if hub else ""
    return f"crossalign = {w} (val {key.removeprefix('val_')} {c[w][key]:.3f}{tail}){how}{routed}{hubs}"


def routes_table(train_result: dict[str, Any], title: str = "") -> Table | None:
    """Which candidate serves each pair of views (train.route; a mixture as `kcca.75+asif.25`) and the
    validation R@1 (mean of both directions) of the joint space, the best closed form (named), ASIF and
    the best mixture; every score is in train_result.json. None when there are no routes."""
    routes = train_result.get("routes") or {}
    if not routes:
        return None
    served = " as served, with the CSLS correction" if any("val_plain" in r for r in routes.values()) else ""
    t = Table(title=title or (f"per-pair routing on validation (R@1, both directions{served})" if train_result.get("routed")
                              else f"per-pair candidates on validation{served}: every pair kept the joint space"))
    for name, just in (("pair", "left"), ("served by", "left"), ("margin", "right"), ("joint", "right"),
                       ("closed form", "right"), ("asif", "right"), ("mix", "right")):
        t.add_column(name, justify=just, no_wrap=True)  # type: ignore[arg-type]

    def best(names: list[str], named: bool) -> str:
        if not names:
            return "—"
        m = max(names, key=lambda n: val[n]["R@1"])
        return f"{val[m]['R@1']:.3f} {m}" if named else f"{val[m]['R@1']:.3f}"

    def short(name: str) -> str:  # "kcca*0.50+asif*0.50" -> "kcca.5+asif.5": the table fits 80 columns
        return "+".join(p.replace("*0.", ".").rstrip("0") for p in name.split("+")) if "+" in name else name

    for key, r in routes.items():
        val, margin = r.get("val", {}), r.get("margin")
        mixes = [m for m in val if "+" in m]
        cfs = [m for m in val if m not in ("joint", "asif") and m not in mixes]
        t.add_row(key.replace("|", "<->"), short(r.get("chosen", "")), "—" if margin is None else f"{margin:+.3f}",
                  best([m for m in val if m == "joint"], False), best(cfs, True),
                  best([m for m in val if m == "asif"], False), best(mixes, False))
    return t


def print_tables(*tables: Table) -> None:
    con = Console()
    width = max(con.width, 60)
    if not con.is_terminal:  # a log or a pipe has no edge: print every table at its natural width, uncut
        width = max([width] + [con.measure(t, options=con.options.update_width(1000)).maximum for t in tables])
    con = Console(width=width)
    for t in tables:
        con.print(t, overflow="ignore", crop=False)
