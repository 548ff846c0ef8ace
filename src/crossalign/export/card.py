"""`card`: a Hugging Face style README.md (YAML metadata + `model-index`) from a run's evaluation JSON.

Written offline, never uploaded. `model-index` holds one result per retrieval direction with R@1/5/10
and MRR of the model, and the baselines of `benchmark.json` (same split) beside them, typed
`<metric>_baseline_<method>` so a leaderboard never mistakes a baseline for the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from crossalign.config import RunConfig
from crossalign.encoders import encoder_facts

__all__ = ["build_card", "write_card"]
_METRICS = (("R@1", "recall_at_1"), ("R@5", "recall_at_5"), ("R@10", "recall_at_10"), ("MRR", "mrr"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object of metrics")
    return d


def _num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return round(float(v), 4) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def build_card(cfg: RunConfig, metrics: dict[str, Any], baselines: dict[str, dict[str, Any]] | None = None, *,
               name: str, dataset: str, license: str = "apache-2.0", split: str = "test",
               train_rows: int | None = None, specs: dict[str, dict[str, Any]] | None = None) -> str:
    """The card text. `metrics`: metrics.json of the run; `baselines`: {method: metrics} (benchmark.json)."""
    cols = cfg.model.columns
    baselines = {k: v for k, v in (baselines or {}).items() if k != "crossalign" and isinstance(v, dict)}
    results = []
    for a in cols:
        for b in cols:
            key = f"{a}->{b}"
            ms = [{"type": t, "name": n, "value": v} for n, t in _METRICS if (v := _num(metrics, f"{key}/{n}")) is not None]
            for method, bm in sorted(baselines.items()):
                ms += [{"type": f"{t}_baseline_{method}", "name": f"{n} ({method} baseline)", "value": v}
                       for n, t in _METRICS[:1] if (v := _num(bm, f"{key}/{n}")) is not None]
            if ms:
                results.append({"task": {"type": "cross-modal-retrieval", "name": f"{key} retrieval"},
                                "dataset": {"type": dataset, "name": dataset, "split": split}, "metrics": ms})
    specs = specs or {}
    towers = sorted({s.get("name", "") for s in specs.values()})
    # What each pretrained tower is, its hub id and licence: declared in its EncoderFacts.
    base_models = [f.card[1] for t in towers if (f := encoder_facts(t)).card and f.card[1]]
    meta = {"license": license, "library_name": "crossalign", "pipeline_tag": "feature-extraction",
            "tags": ["crossalign", "cross-modal-retrieval", "embeddings", *[f"modality:{m}" for m in
                     sorted({str(s.get("modality")) for s in specs.values()})]],
            "datasets": [dataset], "model-index": [{"name": name, "results": results}]}
    if base_models:
        meta["base_model"] = base_models
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {name}", "",
             f"A crossalign model: {len(cols)} views ({', '.join(cols)}) aligned into one {cfg.model.dim}-d, "
             f"unit-norm shared space with the `{cfg.model.objective}` objective.", "",
             "## Views", "", "| view | modality | tower | trained | licence of the tower |", "|---|---|---|---|---|"]
    for c in cols:
        s = specs.get(c, {})
        tuned = "from scratch" if s.get("from_scratch") else ("fine-tuned" if c in cfg.model.train_towers else "frozen")
        what, _, lic = encoder_facts(s.get("name", "")).card or (
            "", None, "part of this model" if s.get("from_scratch") else "see the tower's own card")
        lines.append(f"| {c} | {s.get('modality', '?')} | `{s.get('name', '?')}` {what} | {tuned} | {lic} |")
    lines += ["", f"## Evaluation ({dataset}, {split} split)", ""]
    if results:
        methods = sorted(baselines)
        lines += ["| direction | R@1 | R@5 | R@10 | MRR |" + "".join(f" {m} R@1 |" for m in methods),
                  "|---|---|---|---|---|" + "---|" * len(methods)]
        for a in cols:
            for b in cols:
                if a == b or _num(metrics, f"{a}->{b}/R@1") is None:
                    continue
                row = [_num(metrics, f"{a}->{b}/{n}") for n, _ in _METRICS]
                row += [_num(baselines[m], f"{a}->{b}/R@1") for m in methods]
                lines.append(f"| {a}->{b} | " + " | ".join("—" if v is None else f"{v:.3f}" for v in row) + " |")
        n_test = _num(metrics, "n_test")
        lines += ["", f"{int(n_test) if n_test else '?'} test items; R@K counts a hit when a paired item "
                  "(or one of its group) is in the top K. Reproduce: `crossalign eval RUN --split test`"
                  + (", baselines: `crossalign benchmark CONFIG`." if methods else ".")]
    else:
        lines.append("No evaluation JSON was found: run `crossalign eval RUN --split test` and export the card again.")
    lines += ["", "## Training data", "",
              f"- manifest: `{cfg.train.data or '?'}` (dataset `{dataset}`)"
              + (f", {train_rows} training rows" if train_rows else ""),
              f"- splits: train `{cfg.train.train_split}`, validation `{cfg.train.val_split}`, reported `{split}`",
              f"- {cfg.train.epochs} epochs max, batch {cfg.train.batch_size}, lr {cfg.train.lr}, seed {cfg.train.seed}",
              "", "## Intended use", "",
              "Cross-modal retrieval and similarity between the views above (query in one modality, "
              "results in another), as features for downstream classifiers, and as the shared space of "
              "crossalign's search service and language-model bridge.", "",
              "## Limitations", "",
              "- Measured only on the data and split above; other domains need their own evaluation.",
              "- Frozen towers keep their pretraining biases (ImageNet, web text, English speech).",
              "- Views with frozen non-torch towers (CTranslate2 Whisper, 4-bit e5) are exported as heads "
              "on features: compute features with the named encoder first.",
              "- Retrieval scores are cosine similarities; they are not calibrated probabilities.", "",
              "## Licence", "",
              f"The trained heads and towers of this model: `{license}`. Pretrained towers keep their own licences "
              "(table above).", ""]
    return "\n".join(lines)


def write_card(run: Path, out: Path, cfg: RunConfig, *, license: str = "apache-2.0", name: str | None = None,
               dataset: str | None = None, metrics_file: Path | None = None,
               benchmark_file: Path | None = None) -> Path:
    """README.md in `out` from `run/metrics.json` (or `metrics_file`) and `run/benchmark.json` if present."""
    mf = metrics_file or run / "metrics.json"
    metrics = _read_json(mf) if mf.exists() else {}
    bf = benchmark_file or run / "benchmark.json"
    baselines = _read_json(bf) if bf.exists() else {}
    specs = json.loads((run / "encoders.json").read_text()) if (run / "encoders.json").exists() else {}
    tr = run / "train_result.json"
    rows = _read_json(tr).get("train_rows") if tr.exists() else None
    data = Path(cfg.train.data) if cfg.train.data else None
    ds = dataset or ((data.parent.name if data.suffix else data.name) if data else "custom")
    text = build_card(cfg, metrics, baselines, name=name or run.resolve().name, dataset=ds, license=license,
                      train_rows=int(rows) if isinstance(rows, int) else None, specs=specs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(text)
    return out / "README.md"
