"""Fusion ablation on the scenes data, side by side in one run.

Report consistency (token tagging, contradicted attribute words) and masked attribute
(classification): text only, image only, each fusion module, fused without and with alignment
pre-training, with and without per-word occlusion evidence from the aligned space
(`word_evidence`), and the label-scarcity curve (5 %, 20 %, 100 % of the training labels) with and
without pre-training. Report-consistency rows get a 95 % interval from resampling the test scenes,
and the paired difference to the text-only model. Prints a table and writes JSON.

    python benchmarks/fusion.py --n 2000 --epochs 20 --skip-masked --quick --out fusion.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _align_run(data: Path, out: Path, epochs: int, mods: list[str]) -> Path:
    """Alignment pre-training on the scenes pairs: the demo's recipe (configs/scenes.yaml) on `mods`."""
    from crossalign.config import RunConfig
    from crossalign.recipes.align import train
    from crossalign.recipes.demo import DEMO_CONFIG

    if (out / "model.safetensors").exists():
        return out
    model = dict(DEMO_CONFIG["model"])
    model["views"] = [dict(v) for v in model["views"] if v["column"] in mods]
    cfg = RunConfig.from_dict({
        "model": model,
        "train": {**DEMO_CONFIG["train"], "data": str(data), "out": str(out), "epochs": epochs, "patience": 0,
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
    ap.add_argument("--quick", action="store_true",
                    help="report consistency: single modalities and cross-attention with/without word evidence only")
    ap.add_argument("--data", default=None, help="an existing scenes set (e.g. the demo's runs/demo/data) instead of --n")
    ap.add_argument("--init", default=None, help="an existing alignment run on that data (e.g. runs/demo/run)")
    ap.add_argument("--evidence", default="occlusion-tokens,occlusion",
                    help="word_evidence modes compared with none (occlusion re-encodes every word-deleted caption)")
    ap.add_argument("--rows", default=None,
                    help="semicolon-separated row names to train (default all): run rows in parallel processes on the "
                         "same --work, then once more with --rows none --merge their JSON files for the joint table")
    ap.add_argument("--merge", nargs="*", default=[], help="JSON files of earlier --rows runs on the same --work")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples of the test scenes")
    ap.add_argument("--audio", action="store_true",
                    help="add speech to masked-attribute (Whisper encoding is the slowest step on CPU)")
    args = ap.parse_args()

    from crossalign.datasets.registry import make_dataset
    from crossalign.fuse.config import TaskConfig
    from crossalign.fuse.data import derive, prepare_task
    from crossalign.fuse.evaluate import predict_batches
    from crossalign.fuse.metrics import bootstrap_macro_f1
    from crossalign.fuse.run import load_task_run
    from crossalign.recipes.task import build_align_model, train_task

    evidence = [e for e in args.evidence.split(",") if e and e != "none"]
    wanted = None if args.rows is None else {r.strip() for r in args.rows.split(";")}
    work = Path(args.work)
    data = Path(args.data) if args.data else work / f"scenes-{args.n}"
    t0 = time.time()
    if not (data / "manifest.jsonl").exists():
        make_dataset("scenes", data, n=args.n, seed=args.seed)
    args.n = len((data / "manifest.jsonl").read_text(encoding="utf-8").splitlines())
    mods = ["text", "image", "sensor"] + (["audio"] if args.audio else [])
    a_mods = ["text", "image"] if args.skip_masked else mods  # report consistency needs text + image only
    run = Path(args.init) if args.init else _align_run(
        data, work / f"align-{args.n}-{'+'.join(a_mods)}-{args.align_epochs}", args.align_epochs, a_mods)
    t_setup = time.time() - t0
    rows: list[dict[str, Any]] = []
    test_preds: dict[str, Any] = {}  # report-consistency row -> test predictions (for the intervals)
    preds_dir = work / "preds"
    preds_dir.mkdir(parents=True, exist_ok=True)
    for f in args.merge:  # rows trained by other processes on the same features
        other = json.loads(Path(f).read_text())
        rows.extend(r | {"epochs": r.get("epochs", other["epochs"])} for r in other["rows"])

    def save(complete: bool, **extra: Any) -> None:  # after every row: an interrupted run keeps its rows
        Path(args.out).write_text(json.dumps({"n": args.n, "epochs": args.epochs, "align_epochs": args.align_epochs,
                                              "seed": args.seed, "data": str(data), "init": str(run), "load_average": os.getloadavg(),
                                              "complete": complete, "rows": rows, **extra}, indent=2))

    def one(task: str, name: str, prep: Any, fraction: float = 1.0, init: bool = True, mods: list[str] | None = None,
            **kw: Any) -> None:
        if wanted is not None and name not in wanted:
            return
        t = time.time()
        cfg = TaskConfig(task=task, data=str(data), out=str(work / "runs" / f"{task}-{name}"),
                         init=str(run) if init else None,
                         train={"epochs": args.epochs, "seed": args.seed, "progress": False}, **kw)
        p = derive(prep, mods, fraction, args.seed)
        folder, res, ev = train_task(cfg, prep=p, progress=False)
        m = ev["metrics"]
        rec = {"task": task, "row": name, "fusion": cfg.fusion if len(p.modalities) > 1 else "-",
               "modalities": p.modalities, "init": init, "label_fraction": fraction,
               "word_evidence": cfg.word_evidence, "epochs": args.epochs, "train_rows": ev["train_rows"], "test_rows": ev["rows"],
               "macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"],
               "accuracy": m["accuracy"], "best_epoch": res.best_epoch, "seconds": round(time.time() - t, 1),
               "without": {c: w["macro_f1"] for c, w in ev["without"].items()}}
        for k in ("contradicted/f1", "entity/micro_f1", "entity/macro_f1"):
            if k in m:
                rec[k] = m[k]
        if p.kind == "tag":
            test_preds[name] = predict_batches(load_task_run(folder).model, p.splits["test"])
            np.save(preds_dir / f"{name}.npy", test_preds[name])  # for --merge
        rows.append(rec)
        save(False)
        print(f"  {task:<19} {name:<40} macro-F1 {rec['macro_f1']:.3f}  ({rec['seconds']:.0f} s)", flush=True)

    # Report consistency: features prepared once (cache), every row derives from them.
    _, views, _ = build_align_model(TaskConfig(init=str(run)))
    base = TaskConfig(task="report-consistency", data=str(data), out=str(work / "runs" / "rc-prep"), init=str(run),
                      train={"seed": args.seed, "progress": False},
                      word_evidence="occlusion" if "occlusion" in evidence else "none")
    t = time.time()
    rc = prepare_task(base, align_views=views, progress=True)  # with the word-deleted captions if compared
    t_prep = time.time() - t
    first = {"word_evidence": evidence[0]} if evidence else {}
    one("report-consistency", "text only", rc, mods=["text"])
    for ev in evidence:
        one("report-consistency", f"fused cross-attention + {ev}", rc, word_evidence=ev)
    one("report-consistency", "fused cross-attention", rc)
    one("report-consistency", "image only", rc, mods=["image"])
    if not args.quick:
        for fusion in ("concat", "gated"):
            one("report-consistency", f"fused {fusion}", rc, fusion=fusion)
            if evidence:
                one("report-consistency", f"fused {fusion} + {evidence[0]}", rc, fusion=fusion, **first)
    one("report-consistency", "fused, no align pre-training", rc, init=False)
    if evidence:
        one("report-consistency", f"fused + {evidence[0]}, no align pre-training", rc, init=False, **first)
    if not args.quick:
        for frac in (0.05, 0.2):
            one("report-consistency", f"fused {int(frac * 100)}% labels", rc, fraction=frac)
            one("report-consistency", f"fused {int(frac * 100)}% labels, no pre-train", rc, fraction=frac, init=False)
            if evidence:
                one("report-consistency", f"fused + {evidence[0]} {int(frac * 100)}% labels", rc, fraction=frac,
                    **first)
    test = rc.splits["test"]
    for r in rows:
        f = preds_dir / f"{r['row']}.npy"
        if r["task"] == "report-consistency" and r["row"] not in test_preds and f.exists():
            test_preds[r["row"]] = np.load(f)
    ci = bootstrap_macro_f1(test.targets.numpy(), test_preds, len(rc.classes), test.word_mask.numpy(),
                            reference="text only" if "text only" in test_preds else None, n_boot=args.boot, seed=args.seed)
    for r in rows:
        if r["row"] in ci:
            r["interval"] = ci[r["row"]]
    save(False)
    if not args.skip_masked:
        base_m = TaskConfig(task="masked-attribute", data=str(data), out=str(work / "runs" / "ma-prep"),
                            init=str(run), train={"seed": args.seed, "progress": False}, modalities=mods)
        ma = prepare_task(base_m, align_views=views, progress=True)
        one("masked-attribute", "text only", ma, mods=["text"])
        one("masked-attribute", "image only", ma, mods=["image"])
        one("masked-attribute", f"fused ({'+'.join(mods)})", ma)
        one("masked-attribute", "fused, no align pre-training", ma, init=False)

    print(f"\n{len(test)} test scenes, {int(test.word_mask.sum())} words; intervals: 95 % over {args.boot} "
          "resamples of the test scenes; difference paired with the text-only model\n")
    print("| task | row | epochs | train rows | macro-F1 [95 % CI] | vs text only [95 % CI] | contradicted F1 | "
          "entity micro-F1 | accuracy | seconds |")
    print("|" + "---|" * 10)
    for r in rows:
        iv = r.get("interval")
        f1 = f"{r['macro_f1']:.3f}" + (f" [{iv['lo']:.3f}, {iv['hi']:.3f}]" if iv else "")
        dd = (f"{100 * iv['diff']:+.1f} [{100 * iv['diff_lo']:+.1f}, {100 * iv['diff_hi']:+.1f}]"
              if iv and r["row"] != "text only" else "–")
        print(f"| {r['task']} | {r['row']} | {r.get('epochs', args.epochs)} (best {r['best_epoch']}) | "
              f"{r['train_rows']} | {f1} | {dd} | "
              f"{r.get('contradicted/f1', float('nan')):.3f} | {r.get('entity/micro_f1', float('nan')):.3f} | "
              f"{r['accuracy']:.3f} | {r['seconds']:.0f} |")
    for task in ("report-consistency", "masked-attribute"):
        tr = [r for r in rows if r["task"] == task]
        if not tr:
            continue
        single = max((r["macro_f1"] for r in tr if r["row"] in ("text only", "image only")), default=float("nan"))
        fused = max((r["macro_f1"] for r in tr if r["init"] and r["label_fraction"] == 1 and len(r["modalities"]) > 1),
                    default=float("nan"))
        print(f"{task}: best fused (pre-trained) {fused:.3f} vs best single modality {single:.3f}: "
              f"{100 * (fused - single):+.1f} points macro-F1")
        full = [r for r in tr if r["label_fraction"] == 1 and len(r["modalities"]) > 1 and r["fusion"] == "cross-attention"]
        for r in full[:2]:
            print(f"  modality removed at inference ({r['row']}): " +
                  ", ".join(f"without {c} {v:.3f}" for c, v in r["without"].items()))
    total = time.time() - t0
    print(f"setup (data + alignment pre-training) {t_setup:.0f} s, report-consistency features {t_prep:.0f} s, "
          f"total {total:.0f} s; load average {os.getloadavg()}")
    save(True, setup_seconds=t_setup, prepare_seconds=t_prep, total_seconds=total, test_scenes=len(test))


if __name__ == "__main__":
    main()
