"""Tower tuning at the speed of cached features (`tune_last`, encoders/top.py), on scenes (image + text).

For k = 0 (frozen towers, heads only), 1 and 2 (the last k MiniLM layers and EfficientNet-Lite0
blocks train on cached activations of the frozen lower part), on one scenes split:
- time per training epoch: cached activations vs frozen features vs full-tower tuning (the same
  last k blocks unfrozen, the whole tower run on raw items every step; a few batches timed),
- bytes per item of the cache,
- test R@1 text->image / image->text, beside the validation-tuned CCA baseline on the frozen features.

    python benchmarks/tower_tuning.py --scenes 2000 --out benchmarks/results/tower_tuning.json

Prints a table; writes JSON with the machine's `uptime` load (it is shared: ratios within one run count).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGE = {"grid": 3, "color": True}  # the demo's image view (224 px)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _config(data: Path, out: Path, k: int, a: argparse.Namespace, start: str = "scratch", full: bool = False):
    from crossalign.config import RunConfig

    img, txt = dict(IMAGE), {}
    tuning: dict[str, Any] = {}
    if k and not full:
        img["tune_last"] = txt["tune_last"] = k
    if k and full:  # the same blocks unfrozen, the whole tower on raw items
        tuning = {c: {"method": "unfreeze", "last_blocks": k} for c in ("image", "text")}
    return RunConfig.from_dict({
        "model": {"views": [{"column": "image", "encoder": "image:efficientnet-lite0", "options": img},
                            {"column": "text", "encoder": "text:minilm", "options": txt}],
                  "dim": 256, "head": {"kind": "mlp", "hidden": 1024, "depth": 1, "dropout": 0.1},
                  "train_towers": list(tuning), "tower_tuning": tuning},
        "train": {"data": str(data), "out": str(out), "epochs": a.epochs, "batch_size": a.batch, "lr": 1e-3,
                  "patience": 6, "seed": 0, "progress": False, "start": start, "tower_lr": a.tower_lr}})


def _time_steps(cfg: Any, table: Any, n_batches: int) -> float:
    """Seconds per training step (forward, backward, optimiser) of the task `train` would build."""
    from crossalign.recipes.align import _build, _spec_for
    from crossalign.train.align_task import AlignmentTask

    tr, va = table.split("train"), table.split("val")
    specs = {v.column: _spec_for(v, table) for v in cfg.model.views}
    model = _build(cfg, specs, tr)
    task = AlignmentTask(model, cfg, tr, va)
    opt = torch.optim.AdamW(task.param_groups(), lr=cfg.train.lr)
    model.train()
    perm = torch.randperm(len(tr), generator=torch.Generator().manual_seed(0))
    secs = []
    for b in range(n_batches + 1):  # the first step warms up (allocations, lazy init): not counted
        idx = perm[(b * cfg.train.batch_size) % len(tr):][:cfg.train.batch_size]
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        losses, _ = task.training_forward(idx)
        losses["loss"].backward()
        opt.step()
        if b:
            secs.append(time.perf_counter() - t)
    return float(np.median(secs))


def _train_eval(cfg: Any, table: Any) -> dict[str, Any]:
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.recipes.align import train

    t = time.perf_counter()
    run, res = train(cfg, resume=False, table=table)
    out: dict[str, Any] = {"train_s": round(time.perf_counter() - t, 1), "epochs_run": res.epochs_run}
    if res.history:  # a whole epoch as the trainer ran it: steps + validation + checkpoint (median)
        out["trainer_epoch_s"] = round(float(np.median([h["seconds"] for h in res.history])), 2)
    m = evaluate_run(run).metrics
    out.update({d: m[f"{d}/R@1"] for d in ("text->image", "image->text")})
    out["val_mean_R@1"] = res.best_metric
    out["winner"] = json.loads((run / "train_result.json").read_text())["winner"]
    ft = run / "candidates" / "fine_tuned"
    if (ft / "best.safetensors").exists():  # validation can tie (R@1 1.0): show what tuning reached anyway
        m = evaluate_run(ft).metrics
        out["fine_tuned"] = {d: m[f"{d}/R@1"] for d in ("text->image", "image->text")}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=2000)
    p.add_argument("--ks", default="0,1,2")
    p.add_argument("--starts", default="scratch,closed_form", help="train.start values, each a row per k")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--tower-lr", type=float, default=1e-4)
    p.add_argument("--time-batches", type=int, default=3, help="steps timed per variant")
    p.add_argument("--full-batches", type=int, default=2, help="steps timed for full-tower tuning (0: skip)")
    p.add_argument("--data", default=None, help="scenes folder (made here when absent)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 on a loaded machine)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/tower_tuning.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    from crossalign.datasets.registry import make_dataset
    from crossalign.encoders.top import cache_bytes
    from crossalign.evaluate.baselines import run_baselines
    from crossalign.recipes.align import prepare_features

    tmp = Path(tempfile.mkdtemp(prefix="tower-tuning-"))
    data = Path(a.data) if a.data else tmp / "scenes"
    if not (data / "manifest.jsonl").exists():
        make_dataset("scenes", data, n=a.scenes, seed=0, audio=False)
    res: dict[str, Any] = {"scenes": a.scenes, "epochs": a.epochs, "threads": a.threads, "batch": a.batch, "tower_lr": a.tower_lr,
                           "image_options": IMAGE, "uptime_start": _uptime(), "rows": []}
    ks = [int(k) for k in a.ks.split(",")]
    frozen_step = None
    try:
        for k in ks:
            cfg = _config(data, tmp / f"run-k{k}", k, a)
            t = time.perf_counter()
            table, _ = prepare_features(cfg, progress=False)
            extract_s = time.perf_counter() - t
            n_tr = len(table.split("train"))
            row: dict[str, Any] = {"k": k, "mode": "frozen features" if k == 0 else "cached activations",
                                   "extract_s": round(extract_s, 1),
                                   "cache_bytes_per_item": {c: cache_bytes(s) for c, s in table.specs.items()}}
            if k == 0:  # the baseline every row is read against, on the same split
                res["cca"] = run_baselines(table, ["image", "text"], methods=["cca"])["cca"]
                res["split"] = {s: len(table.split(s)) for s in ("train", "val", "test")}
            step = _time_steps(cfg, table, a.time_batches)
            frozen_step = step if k == 0 else frozen_step
            row["epoch_s"] = round(step * -(-n_tr // a.batch), 2)
            for start_ in a.starts.split(","):
                r = dict(row) if start_ == a.starts.split(",")[0] else {"k": k, "mode": row["mode"]}
                r["mode"] += f", start={start_}"
                r.update(_train_eval(_config(data, tmp / f"run-k{k}-{start_}", k, a, start=start_), table))
                res["rows"].append(r)
                print(f"  k={k}: {r}", file=sys.stderr, flush=True)
                shutil.rmtree(tmp / f"run-k{k}-{start_}", ignore_errors=True)
            if k and a.full_batches:
                cfg_full = _config(data, tmp / f"full-k{k}", k, a, full=True)
                step = _time_steps(cfg_full, table, a.full_batches)
                res["rows"].append({"k": k, "mode": "full-tower tuning (timed only)",
                                    "epoch_s": round(step * -(-n_tr // a.batch), 2)})
                print(f"  full k={k}: {res['rows'][-1]}", file=sys.stderr, flush=True)
    finally:
        res["uptime_end"] = _uptime()
        shutil.rmtree(tmp, ignore_errors=True)
    if frozen_step:
        for r in res["rows"]:
            if "epoch_s" in r:
                r["epoch_vs_frozen"] = round(r["epoch_s"] / res["rows"][0]["epoch_s"], 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(_table(res))


def _table(res: dict[str, Any]) -> str:
    cca = res.get("cca", {})
    head = ("| k | mode | epoch s (steps) | vs frozen | epoch s (trainer) | cache B/item (image, text) | "
            "text->image R@1 | image->text R@1 | train s | winner |")
    lines = [(f"scenes {res['scenes']} (split {res.get('split')}), image+text, {res['epochs']} epochs, "
              f"batch {res['batch']}, tower_lr {res['tower_lr']}; load: {res['uptime_start']}"),
             head, "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v))
    for r in res["rows"]:
        cb = r.get("cache_bytes_per_item") or {}
        mem = f"{cb.get('image', '')}, {cb.get('text', '')}" if cb else ""
        lines.append(f"| {r['k']} | {r['mode']} | {fmt(r.get('epoch_s'))} | {fmt(r.get('epoch_vs_frozen'))} | "
                     f"{fmt(r.get('trainer_epoch_s'))} | {mem} | "
                     f"{fmt(r.get('text->image'))} | {fmt(r.get('image->text'))} | {fmt(r.get('train_s'))} | "
                     f"{r.get('winner', '')} |")
    lines.append(f"| | CCA (tuned on val, frozen features) | | | | | {fmt(cca.get('text->image/R@1'))} | "
                 f"{fmt(cca.get('image->text/R@1'))} | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
