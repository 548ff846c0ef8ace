"""Federated vs centralised vs single-site alignment on `scenes`, non-IID, mixed modality subsets.

4 sites; Dirichlet(alpha) over the largest object's colour+shape (`label`); each site holds three
of the four views. Same model config, same splits, test split of the pooled data for everyone:
- centralised: `train()` on the pooled rows, all four views;
- single site: `train()` on one site's rows and views (each is scored on its own 6 directions,
  beside the federated model on the same directions);
- federated: `run_federation` (Flower simulation engine), then with client-level DP noise.
Prints a table and writes JSON (with the machine's load average: the machine is shared).

    python benchmarks/federated.py --n 1500 --rounds 10 --local-epochs 2 --epochs 10 --out benchmarks/results/federated.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SITE_VIEWS = "0=image,text,audio;1=image,text,sensor;2=image,audio,sensor;3=text,audio,sensor"


def _mean_r1(m: dict[str, float], cols: list[str]) -> float:
    vals = [m[f"{a}->{b}/R@1"] for a in cols for b in cols if a != b]
    return sum(vals) / len(vals)


def _uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[:3].__str__()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--sites", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=0.3)
    ap.add_argument("--site-modalities", default=SITE_VIEWS)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10, help="centralised and single-site epochs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--dp-clip", type=float, default=0.0, help="0: median site update norm of the plain run")
    ap.add_argument("--dp-noise", type=float, default=0.002)
    ap.add_argument("--work", default="/tmp/crossalign-fed-bench")
    ap.add_argument("--out", default="benchmarks/results/federated.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("crossalign.federate").setLevel(logging.INFO)

    from crossalign.config import load_config
    from crossalign.data.manifest import load_manifest, write_manifest
    from crossalign.datasets.registry import make_dataset
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.federate.config import FederationConfig, parse_site_modalities
    from crossalign.federate.partition import partition_rows
    from crossalign.federate.runner import run_federation
    from crossalign.federate.site import Site, site_run_config
    from crossalign.recipes.align import ensure_splits, prepare_features, train

    work = Path(args.work)
    data = work / f"scenes-{args.n}"
    if not (data / "manifest.jsonl").exists():
        make_dataset("scenes", data, n=args.n, seed=0, progress=True)
    cfg = load_config(Path(__file__).parents[1] / "configs" / "scenes.yaml")
    cfg.train.data, cfg.train.epochs, cfg.train.batch_size = str(data), args.epochs, args.batch_size
    cfg.train.patience, cfg.train.progress = 0, False
    cfg.model.head.hidden = args.hidden
    cols = cfg.model.columns
    res: dict[str, Any] = {"n": args.n, "sites": args.sites, "alpha": args.alpha, "site_modalities": args.site_modalities,
                           "rounds": args.rounds, "local_epochs": args.local_epochs, "epochs": args.epochs,
                           "batch_size": args.batch_size, "hidden": args.hidden, "load_before": _uptime()}
    def save() -> None:  # after every stage, so a long run that is cut short still leaves its figures
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))

    t = time.time()
    prepare_features(cfg, progress=True)  # pooled cache (the centralised baseline's)
    res["pooled_features_s"] = round(time.time() - t, 1)

    fed = FederationConfig(run=copy.deepcopy(cfg), sites=args.sites, partition=f"dirichlet:{args.alpha}",
                           site_modalities=parse_site_modalities(args.site_modalities), rounds=args.rounds,
                           local_epochs=args.local_epochs, timeout=3600)
    m = ensure_splits(load_manifest(data), cfg.train.seed)
    parts = partition_rows(m, "dirichlet", args.alpha, args.sites, cfg.train.seed, "label")
    res["site_rows"] = [len(p) for p in parts]
    res["site_labels"] = [len({m.rows[int(i)]["label"] for i in p}) for p in parts]
    t = time.time()
    for s in range(args.sites):  # each site extracts its own features into its own cache (timed once)
        Site(fed, s)
    res["site_features_s"] = round(time.time() - t, 1)

    # federated
    t = time.time()
    rec = run_federation(fed, work / "fed")
    res["fed_wall_s"] = round(time.time() - t, 1)
    assert rec.status == "completed", rec.error
    fm = evaluate_run(work / "fed", split="test").metrics
    vals = [r["val_R@1"] for r in rec.rounds]
    final = vals[-1]
    res["fed"] = {"mean_R@1": _mean_r1(fm, cols), "directions": {k: v for k, v in fm.items() if k.endswith("/R@1")},
                  "val_by_round": vals, "rounds_to_90pct": next(i + 1 for i, v in enumerate(vals) if v >= 0.9 * final),
                  "bytes_per_round": sum(r["bytes_sent"] + r["bytes_received"] for r in rec.rounds) / len(rec.rounds),
                  "round_s": sum(r["seconds"] for r in rec.rounds) / len(rec.rounds), "failures": rec.failures,
                  "best_round": rec.best_round}
    norms = sorted(s["update_norm"] for r in rec.rounds for s in r["sites"].values() if s.get("update_norm"))
    res["fed"]["median_update_norm"] = norms[len(norms) // 2]
    save()

    # centralised on pooled data
    c = copy.deepcopy(cfg)
    c.train.out = str(work / "central")
    t = time.time()
    train(c, resume=False)
    res["central_train_s"] = round(time.time() - t, 1)
    cm = evaluate_run(c.train.out, split="test").metrics
    res["central"] = {"mean_R@1": _mean_r1(cm, cols), "directions": {k: v for k, v in cm.items() if k.endswith("/R@1")}}
    save()

    # single-site models, each on its own rows and views, scored on its own directions
    singles = []
    for s in range(args.sites):
        sc = site_run_config(fed, s)
        rows = [{**m.rows[int(i)]} for i in parts[s]]
        write_manifest(rows, data / f"manifest-site{s}.jsonl")
        sc.train.data, sc.train.out = str(data / f"manifest-site{s}.jsonl"), str(work / f"site{s}")
        train(sc, resume=False)
        sm = evaluate_run(sc.train.out, data=data, split="test").metrics
        own = sc.model.columns
        singles.append({"site": s, "views": own, "rows": len(rows), "mean_R@1": _mean_r1(sm, own),
                        "fed_same_directions": _mean_r1(fm, own), "central_same_directions": _mean_r1(cm, own)})
        res["single_sites"] = singles
        save()

    # federated with client-level DP
    clip = args.dp_clip or res["fed"]["median_update_norm"]
    dfed = copy.deepcopy(fed)
    dfed.dp_clip, dfed.dp_noise = clip, args.dp_noise
    dfed.__post_init__()
    t = time.time()
    drec = run_federation(dfed, work / "fed-dp")
    assert drec.status == "completed", drec.error
    dm = evaluate_run(work / "fed-dp", split="test").metrics
    res["fed_dp"] = {"mean_R@1": _mean_r1(dm, cols), "wall_s": round(time.time() - t, 1), "privacy": drec.privacy,
                     "val_by_round": [r["val_R@1"] for r in drec.rounds]}
    res["load_after"] = _uptime()
    save()

    best = max(singles, key=lambda x: x["mean_R@1"])
    lines = [
        "| system | test mean R@1 | vs centralised |",
        "|---|---|---|",
        f"| centralised, pooled data (4 views, 12 directions) | {res['central']['mean_R@1']:.3f} | 1.00x |",
        f"| federated FedAvg, {args.sites} sites, {args.rounds} rounds x {args.local_epochs} local epochs | "
        f"{res['fed']['mean_R@1']:.3f} | {res['fed']['mean_R@1'] / res['central']['mean_R@1']:.2f}x |",
        f"| federated + client DP (z={args.dp_noise}, clip {clip:.3g}; eps={drec.privacy['epsilon']:.3g} at "
        f"delta={drec.privacy['delta']:g}) | {res['fed_dp']['mean_R@1']:.3f} | "
        f"{res['fed_dp']['mean_R@1'] / res['central']['mean_R@1']:.2f}x |",
        "", "| single site | rows | views | its own model | federated, same directions | centralised, same directions |",
        "|---|---|---|---|---|---|"]
    for s in singles:
        lines.append(f"| {s['site']} | {s['rows']} | {','.join(s['views'])} | {s['mean_R@1']:.3f} | "
                     f"{s['fed_same_directions']:.3f} | {s['central_same_directions']:.3f} |")
    lines += ["", f"best single site: {best['site']} at {best['mean_R@1']:.3f}; federated on its directions "
              f"{best['fed_same_directions']:.3f} ({best['fed_same_directions'] - best['mean_R@1']:+.3f})",
              f"rounds to 90% of final val R@1: {res['fed']['rounds_to_90pct']} of {args.rounds}; "
              f"bytes per round {res['fed']['bytes_per_round'] / 2**20:.1f} MB; "
              f"wall: federated {res['fed_wall_s']} s (rounds {res['fed']['round_s']:.1f} s each) vs centralised "
              f"training {res['central_train_s']} s; load {res['load_before']} -> {res['load_after']}"]
    table = "\n".join(lines)
    print(table)
    res["table"] = table
    save()


if __name__ == "__main__":
    main()
