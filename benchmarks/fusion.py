"""Fusion ablation on the scenes data, side by side in one run.

Report consistency (token tagging, contradicted attribute words) and masked attribute
(classification): text only, image only, each fusion module, fused without and with alignment
pre-training, and the label-scarcity curve (5 %, 20 %, 100 % of the training labels) with and
without pre-training. Prints a table and writes JSON.

    python benchmarks/fusion.py --n 1200 --epochs 20 --out fusion.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _align_run(data: Path, out: Path, epochs: int, mods: list[str]) -> Path:
    """Alignment pre-training on the scenes pairs (the pooled views the task models use)."""
    from crossalign.config import RunConfig
    from crossalign.fuse.config import DEFAULT_ALIGN_VIEWS
    from crossalign.recipes.align import train

    if (out / "model.safetensors").exists():
        return out
    cfg = RunConfig.from_dict({
        "model": {"views": [dict(DEFAULT_ALIGN_VIEWS[c]) for c in mods], "dim": 128, "head": {"hidden": 128}},
        "train": {"data": str(data), "out": str(out), "epochs": epochs, "batch_size": 128, "patience": 0,
                  "progress": True}})
    run, _ = train(cfg, resume=False)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1200, help="scenes to generate")
    ap.add_argument("--epochs", type=int, default=20, help="task training epochs per row")
    ap.add_argument("--align-epochs", type=int, default=20)
    ap.add_argument("--work", default="/tmp/crossalign-fusion-bench")
    ap.add_argument("--out", default="fusion.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-masked", action="store_true", help="only the report-consistency table")
    ap.add_argument("--audio", action="store_true",
                    help="add speech to masked-attribute (Whisper encoding is the slowest step on CPU)")
    args = ap.parse_args()

    from crossalign.datasets.registry import make_dataset
    from crossalign.fuse.config import TaskConfig
    from crossalign.fuse.data import derive, prepare_task
    from crossalign.recipes.task import build_align_model, train_task

    work = Path(args.work)
    data = work / f"scenes-{args.n}"
    t0 = time.time()
    if not (data / "manifest.jsonl").exists():
        make_dataset("scenes", data, n=args.n, seed=args.seed)
    mods = ["text", "image", "sensor"] + (["audio"] if args.audio else [])
    run = _align_run(data, work / f"align-{args.n}-{len(mods)}", args.align_epochs, mods)
    t_setup = time.time() - t0
    rows: list[dict[str, Any]] = []

    def one(task: str, name: str, prep: Any, fraction: float = 1.0, init: bool = True, mods: list[str] | None = None,
            **kw: Any) -> None:
        t = time.time()
        cfg = TaskConfig(task=task, data=str(data), out=str(work / "runs" / f"{task}-{name}"),
                         init=str(run) if init else None,
                         train={"epochs": args.epochs, "seed": args.seed, "progress": False}, **kw)
        p = derive(prep, mods, fraction, args.seed)
        _, res, ev = train_task(cfg, prep=p, progress=False)
        m = ev["metrics"]
        rec = {"task": task, "row": name, "fusion": cfg.fusion if len(p.modalities) > 1 else "-",
               "modalities": p.modalities, "init": init, "label_fraction": fraction,
               "train_rows": ev["train_rows"], "macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"],
               "accuracy": m["accuracy"], "best_epoch": res.best_epoch, "seconds": round(time.time() - t, 1),
               "without": {c: w["macro_f1"] for c, w in ev["without"].items()}}
        for k in ("contradicted/f1", "entity/micro_f1", "entity/macro_f1"):
            if k in m:
                rec[k] = m[k]
        rows.append(rec)
        # Written after every row, so an interrupted run keeps what it measured.
        Path(args.out).write_text(json.dumps({"n": args.n, "epochs": args.epochs, "seed": args.seed,
                                              "complete": False, "rows": rows}, indent=2))
        print(f"  {task:<19} {name:<26} macro-F1 {rec['macro_f1']:.3f}  ({rec['seconds']:.0f} s)", flush=True)

    # Report consistency: features prepared once (cache), every row derives from them.
    _, views, _ = build_align_model(TaskConfig(init=str(run)))
    base = TaskConfig(task="report-consistency", data=str(data), out=str(work / "runs" / "rc-prep"), init=str(run),
                      train={"seed": args.seed, "progress": False})
    rc = prepare_task(base, align_views=views, progress=True)
    one("report-consistency", "text only", rc, mods=["text"])
    one("report-consistency", "image only", rc, mods=["image"])
    for fusion in ("concat", "gated", "cross-attention"):
        one("report-consistency", f"fused {fusion}", rc, fusion=fusion)
    one("report-consistency", "fused, no align pre-training", rc, init=False)
    for frac in (0.05, 0.2):
        one("report-consistency", f"fused {int(frac * 100)}% labels", rc, fraction=frac)
        one("report-consistency", f"fused {int(frac * 100)}% labels, no pre-train", rc, fraction=frac, init=False)
    if not args.skip_masked:
        base_m = TaskConfig(task="masked-attribute", data=str(data), out=str(work / "runs" / "ma-prep"),
                            init=str(run), train={"seed": args.seed, "progress": False}, modalities=mods)
        ma = prepare_task(base_m, align_views=views, progress=True)
        one("masked-attribute", "text only", ma, mods=["text"])
        one("masked-attribute", "image only", ma, mods=["image"])
        one("masked-attribute", f"fused ({'+'.join(mods)})", ma)
        one("masked-attribute", "fused, no align pre-training", ma, init=False)

    print()
    hdr = "| task | row | train rows | macro-F1 | contradicted F1 | entity micro-F1 | accuracy | seconds |"
    print(hdr)
    print("|" + "---|" * 8)
    for r in rows:
        print(f"| {r['task']} | {r['row']} | {r['train_rows']} | {r['macro_f1']:.3f} | "
              f"{r.get('contradicted/f1', float('nan')):.3f} | {r.get('entity/micro_f1', float('nan')):.3f} | "
              f"{r['accuracy']:.3f} | {r['seconds']:.0f} |")
    for task in ("report-consistency", "masked-attribute"):
        tr = [r for r in rows if r["task"] == task]
        if not tr:
            continue
        single = max(r["macro_f1"] for r in tr if r["row"] in ("text only", "image only"))
        fused = max(r["macro_f1"] for r in tr if r["init"] and r["label_fraction"] == 1 and len(r["modalities"]) > 1)
        print(f"{task}: best fused (pre-trained) {fused:.3f} vs best single modality {single:.3f}: "
              f"{100 * (fused - single):+.1f} points macro-F1")
        full = [r for r in tr if r["label_fraction"] == 1 and len(r["modalities"]) > 1 and r["fusion"] == "cross-attention"]
        for r in full[:1]:
            print(f"  modality removed at inference ({r['row']}): " +
                  ", ".join(f"without {c} {v:.3f}" for c, v in r["without"].items()))
    total = time.time() - t0
    print(f"setup (data + alignment pre-training) {t_setup:.0f} s, total {total:.0f} s")
    Path(args.out).write_text(json.dumps({"n": args.n, "epochs": args.epochs, "seed": args.seed,
                                          "setup_seconds": t_setup, "total_seconds": total, "complete": True, "rows": rows},
                                         indent=2))


if __name__ == "__main__":
    main()
