"""The main job on built-in data: make `scenes`, extract features, train, evaluate, compare, plot."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["DEMO_CONFIG", "DEMO_BASELINES", "run_demo"]

# Every baseline tuned on validation; kernel CCA is left to `crossalign benchmark` (it alone would
# add ~1 min to the demo's evaluation on 2 cores).
DEMO_BASELINES = ["cca", "ridge", "procrustes", "encoder", "random"]

# Same content as configs/scenes.yaml (a test keeps them equal).
DEMO_CONFIG: dict[str, Any] = {
    "model": {
        "views": [
            {"column": "image", "encoder": "image:efficientnet-lite0", "options": {"grid": 3, "color": True}},
            {"column": "text", "encoder": "text:minilm"},
            {"column": "audio", "encoder": "audio:whisper-tiny"},
            # what `encoders.default_sensor_tower` picks for the scenes' 2-D maps, named so the YAML shows it
            {"column": "sensor", "encoder": "sensor:conv2d"},
        ],
        "dim": 256,
        "head": {"kind": "mlp", "hidden": 1024, "depth": 1, "dropout": 0.1},
        "pairing": "all",
        "objective": "infonce",
        "temperature": 0.07,
    },
    "train": {"epochs": 20, "batch_size": 128, "lr": 0.001, "weight_decay": 0.05, "patience": 6, "seed": 0},
}


def run_demo(out: str | Path = "runs/demo", n: int = 2000, epochs: int | None = None, baselines: bool = True,
             seed: int = 0, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from crossalign.config import RunConfig
    from crossalign.datasets.registry import make_dataset
    from crossalign.evaluate.baselines import run_baselines
    from crossalign.recipes.benchmark import directions
    from crossalign.evaluate.plots import plot_curves, plot_gallery, plot_similarity
    from crossalign.evaluate.report import methods_table, print_tables, retrieval_table, view_table, winner_line
    from crossalign.evaluate.run_eval import evaluate_model
    from crossalign.align.io import load_run
    from crossalign.recipes.align import prepare_features, train

    out = Path(out)
    data = out / "data"
    times: dict[str, float] = {}
    t0 = time.time()
    if not (data / "manifest.jsonl").exists():
        log(f"[1/5] making the scenes dataset ({n} items) in {data}")
        make_dataset("scenes", data, n=n, seed=seed, progress=True)
    else:
        log(f"[1/5] scenes dataset found in {data}")
    times["make"] = time.time() - t0
    cfg = RunConfig.from_dict(copy.deepcopy(DEMO_CONFIG))
    cfg.train.data, cfg.train.out, cfg.train.seed = str(data), str(out / "run"), seed
    if epochs:
        cfg.train.epochs = epochs
    t = time.time()
    log("[2/5] extracting features (cached: a second run re-uses them)")
    table, _ = prepare_features(cfg, progress=True)
    times["features"] = time.time() - t
    t = time.time()
    log(f"[3/5] training heads on {len(table.split('train'))} train pairs, validating on {len(table.split('val'))}")
    run, res = train(cfg, resume=False, table=table)
    times["train"] = time.time() - t
    t = time.time()
    log(f"[4/5] evaluating on the test split ({len(table.split('test'))} items)")
    model, cfg = load_run(run)
    # Scenes labels are plain words ("red circle"): "a red circle" is the natural class prompt here.
    ev = evaluate_model(model, cfg, table, "test", prompt="a {}")
    m = ev.metrics
    (run / "metrics.json").write_text(json.dumps(m, indent=2))
    results = {"crossalign": m}
    if baselines:
        chosen: dict[str, Any] = {}
        results.update(run_baselines(table, cfg.model.columns, methods=DEMO_BASELINES, seed=seed, progress=True,
                                     selected=chosen))
        (run / "benchmark.json").write_text(json.dumps(results, indent=2))
        (run / "baselines.json").write_text(json.dumps(chosen, indent=2))
    times["eval"] = time.time() - t
    log("[5/5] plots")
    test = ev.table
    plot_curves(run / "metrics.jsonl", run / "curves.png")
    plot_similarity(ev.embeddings["image"], ev.embeddings["text"], run / "similarity.png", ("image", "text"))
    images = [test.manifest.base_dir / p for p in test.meta("image")]
    plot_gallery(test.meta("text")[:4], ev.embeddings["text"][:4], ev.embeddings["image"], images, run / "gallery.png")
    times["total"] = time.time() - t0
    cols = cfg.model.columns
    print_tables(retrieval_table(m, cols, "R@1", "scenes test R@1 (row: query, column: target)"),
                 view_table(m, cols))
    if baselines:
        won = winner_line(json.loads((run / "train_result.json").read_text()))
        print_tables(methods_table(results, directions(cols), caption=won))
    (run / "demo_times.json").write_text(json.dumps(times, indent=2))
    log(f"best epoch {res.best_epoch}; mean test R@1 {m['mean/R@1']:.3f}; "
        f"time {times['total']:.0f}s (features {times['features']:.0f}s, train {times['train']:.0f}s)")
    log(f"run folder: {run}  (metrics.json, benchmark.json, curves.png, similarity.png, gallery.png)")
    return {"run": str(run), "metrics": m, "results": results, "times": times}
