"""One self-contained HTML report per run (or several runs side by side), plus the same numbers as
CLIP_benchmark-style JSON and an open_clip-style CSV row per run: collect -> render -> write."""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from crossalign.report.export import clip_benchmark_entry, write_csv

__all__ = ["build_report", "render_html", "ReportFiles"]

_VIEW_KEYS = (
    ("zeroshot_acc", "zero-shot acc."),
    ("zeroshot_bal_acc", "zero-shot bal. acc."),
    ("hardneg_acc", "hard-neg"),
    ("hardneg_acc/color", "hard-neg colour"),
    ("hardneg_acc/shape", "shape"),
    ("hardneg_acc/size", "size"),
    ("hardneg_acc/position", "position"),
    ("probe_acc", "linear probe"),
    ("uniformity", "uniformity"),
)


@dataclass
class ReportFiles:
    html: Path
    json: Path
    csv: Path


def _view(rep: dict[str, Any]) -> dict[str, Any]:
    """Table-ready additions (best method per direction, per-view rows, gaps) for the template."""
    m, cols = rep["metrics"], rep["columns"]
    rep = dict(rep)
    rep["best"] = {
        d: max((meth for meth in rep["results"] if d in rep["results"][meth]),
               key=lambda meth: rep["results"][meth][d]["R@1"]) for d in rep["directions"]
    }
    keys = [(k, n) for k, n in _VIEW_KEYS if any(f"{c}/{k}" in m for c in cols)]
    rep["view_keys"] = keys
    rep["view_rows"] = (
        [(c, [f"{m[f'{c}/{k}']:.3f}" if f"{c}/{k}" in m else "—" for k, _ in keys]) for c in cols]
        if keys
        else []
    )
    rep["gaps"] = [
        (f"{a}-{b}", m[f"{a}-{b}/gap"], m.get(f"{a}-{b}/alignment", float("nan")))
        for i, a in enumerate(cols)
        for b in cols[i + 1 :]
        if f"{a}-{b}/gap" in m
    ]
    rep["config_json"] = json.dumps(rep["card"]["config"], indent=2)
    rep["mean_r1"] = sum(rep["results"]["crossalign"][d]["R@1"] for d in rep["directions"]) / max(
        1, len(rep["directions"])
    )
    rep["absent"] = [
        n
        for k, n in (
            ("federation", "federated rounds"),
            ("fusion", "fusion tasks"),
            ("bridge", "language-model bridge"),
        )
        if k not in rep["extras"]
    ]
    for f in rep["failures"]:
        for s in (f.get("explanation") or {}).get("sides", []):
            s["top"] = sorted(((u["label"], u["attribution"]) for u in s["units"]), key=lambda t: -t[1])[:3]
    return rep


def render_html(reps: Sequence[dict[str, Any]]) -> str:
    import jinja2

    from crossalign.report.template import TEMPLATE

    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    views = [_view(r) for r in reps]
    dirs = list(dict.fromkeys(d for r in reps for d in r["directions"]))
    return env.from_string(TEMPLATE).render(
        reps=views,
        all_directions=dirs,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_report(
    runs: Sequence[str | Path],
    out: str | Path,
    data: str | Path | None = None,
    failures: int = 3,
    explain: int | None = None,
    n_boot: int = 1000,
    say: Callable[[str], None] | None = None,
) -> ReportFiles:
    """Write OUT (.html), OUT.json (CLIP_benchmark schema, one entry per run) and OUT.csv (one row per run)."""
    from crossalign.report.collect import collect_run

    out = Path(out)
    if out.suffix != ".html":
        out = out.with_suffix(".html")
    out.parent.mkdir(parents=True, exist_ok=True)
    reps = [
        collect_run(r, data, n_boot=n_boot, failures=failures, explain=explain, say=say or (lambda _: None))
        for r in runs
    ]
    files = ReportFiles(out, out.with_suffix(".json"), out.with_suffix(".csv"))
    _atomic(files.html, render_html(reps))
    _atomic(files.json, json.dumps([clip_benchmark_entry(r) for r in reps], indent=2))
    _atomic(files.csv, write_csv(reps))
    return files
