"""Federated vs centralised vs single-site alignment, non-IID, on `scenes` (mixed modality subsets)
or a real built-in set (`cedict`).

scenes: 4 sites; Dirichlet(alpha) over the largest object's colour+shape (`label`); each site holds
three of the four views. cedict: 4 sites; Dirichlet(alpha) over the HSK level (sites differ in
vocabulary), both views everywhere. Same model config, same splits, pooled test split for everyone:
- centralised: `train()` on the pooled rows (`train.start: auto`: scratch, closed form, fine-tuned);
- single site: `train()` on one site's rows and views, scored on its own directions;
- federated (Flower simulation engine): closed-form start from the sites' statistics, then FedAvg
  rounds; the same from scratch (`--scratch`, the earlier design); with client-level DP noise.
  `--start scratch|auto` sets the main federation's start; `--central-from FILE` takes the centralised
  result of an earlier run of this script (same set and splits) instead of training it again.
Prints a table and writes JSON (with the load average: the machine is shared).

    python benchmarks/federated.py --set scenes --n 1500 --rounds 10 --local-epochs 2 --epochs 10
    python benchmarks/federated.py --set cedict --rounds 10 --local-epochs 2 --epochs 10 --out benchmarks/results/federated_cedict.json
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

SETS: dict[str, dict[str, Any]] = {
    "scenes": {"key": "label", "views": "0=image,text,audio;1=image,text,sensor;2=image,audio,sensor;3=text,audio,sensor",
               "scratch": ["sensor"]},  # the radar tower trains from scratch
    "cedict": {"key": "hsk_level", "views": "", "cols": ["text_zh", "text"]},
}


def _mean_r1(m: dict[str, float], cols: list[str]) -> float:
    vals = [m[f"{a}->{b}/R@1"] for a in cols for b in cols if a != b]
    return sum(vals) / len(vals)


def _split_r1(directions: dict[str, float], scratch: list[str]) -> dict[str, float]:
    """Mean R@1 over the directions without / with a from-scratch view (scenes: radar)."""
    hit: list[float] = []
    rest: list[float] = []
    for k, v in directions.items():
        if "->" in k and k.endswith("/R@1"):
            (hit if set(k.removesuffix("/R@1").split("->")) & set(scratch) else rest).append(v)
    return {"frozen_views": sum(rest) / len(rest), "scratch_views": sum(hit) / len(hit)} if hit and rest else {}


def _uptime() -> list[str]:
    return Path("/proc/loadavg").read_text().split(" ")[:3]


def _config(args: argparse.Namespace, data: Path) -> Any:
    from crossalign.config import RunConfig, load_config

    if args.set == "scenes":
        cfg = load_config(Path(__file__).parents[1] / "configs" / "scenes.yaml")
        cfg.model.head.hidden = args.hidden
    else:  # the encoders `--modalities` would choose
        from crossalign.cli.common import apply_cli_defaults
        from crossalign.data.encoder_choice import recorded_encoders
        from crossalign.data.manifest import load_manifest

        cfg = RunConfig.from_dict({"model": {"views": [{"column": c} for c in SETS[args.set]["cols"]]}})
        apply_cli_defaults(cfg.model.views, recorded_encoders(load_manifest(data)))
    cfg.train.data, cfg.train.epochs, cfg.train.batch_size = str(data), args.epochs, args.batch_size
    cfg.train.patience, cfg.train.progress = 0, False
    if args.lr:
        cfg.train.lr = args.lr
    cfg.train.seed = args.seed  # the site partition, the model's initialisation and the batch order
    return cfg


def _federate(fed: Any, out: Path, cols: list[str]) -> dict[str, Any]:
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.federate.runner import run_federation

    t = time.time()
    rec = run_federation(fed, out)
    wall = round(time.time() - t, 1)
    assert rec.status == "completed", rec.error
    fm = evaluate_run(out, split="test").metrics
    cf = rec.closed_form or {}
    vals = ([cf["val_R@1"]] if cf else []) + [r["val_R@1"] for r in rec.rounds]  # round 0: the closed form
    first = 0 if cf else 1
    final = vals[-1]
    norms = sorted(s["update_norm"] for r in rec.rounds for s in r["sites"].values() if s.get("update_norm"))
    joint: dict[str, Any] = {}
    if (rec.routing or {}).get("routes"):  # the same best round without its routes, side by side
        from crossalign.align.io import load_run, save_model
        from crossalign.train.routing import joint_model

        jm, jc = joint_model(*load_run(out))
        save_model(jm, jc, out / "joint-only", "model")
        jf = evaluate_run(out / "joint-only", split="test").metrics
        joint = {"mean_R@1": _mean_r1(jf, cols), "directions": {k: v for k, v in jf.items() if k.endswith("/R@1")}}
    alone: dict[str, Any] = {}
    if rec.candidates:  # start auto: each federation alone on test, beside the run (per pair: both combined)
        for name in rec.candidates:
            cm = evaluate_run(out / "candidates" / name, split="test").metrics
            alone[name] = {"mean_R@1": _mean_r1(cm, cols), "directions": {k: v for k, v in cm.items() if k.endswith("/R@1")}}
    return {"mean_R@1": _mean_r1(fm, cols), "directions": {k: v for k, v in fm.items() if k.endswith("/R@1")},
            "routing": rec.routing, "joint_only": joint, "averaged": rec.averaged,
            "per_pair": rec.per_pair, "candidates_alone": alone,
            "val_by_round": vals, "first_round": first,
            "rounds_to_90pct": next(i + first for i, v in enumerate(vals) if v >= 0.9 * final),
            "bytes_per_round": sum(r["bytes_sent"] + r["bytes_received"] for r in rec.rounds) / len(rec.rounds),
            "closed_form": cf, "candidates": rec.candidates, "winner": rec.winner,
            "round_s": sum(r["seconds"] for r in rec.rounds) / len(rec.rounds),
            "failures": rec.failures, "best_round": rec.best_round, "wall_s": wall, "privacy": rec.privacy,
            "median_update_norm": norms[len(norms) // 2] if norms else None}


def _central(args: argparse.Namespace, cfg: Any, work: Path, cols: list[str]) -> dict[str, Any]:
    """`train()` on the pooled rows; with --reuse-central, a run folder this script trained earlier with
    the very same config is evaluated again instead (its training time is kept beside it)."""
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.recipes.align import train

    c = copy.deepcopy(cfg)
    c.train.out = str(work / "central")
    done = work / "central" / "bench_train.json"
    if args.reuse_central and done.exists() and json.loads(done.read_text())["config"] == c.to_dict():
        seconds = json.loads(done.read_text())["seconds"]
        print(f"centralised: reusing {c.train.out} (same config, trained in {seconds} s)")
    else:
        t = time.time()
        train(c, resume=False)
        seconds = round(time.time() - t, 1)
        done.write_text(json.dumps({"config": c.to_dict(), "seconds": seconds, "load": _uptime()}, default=str))
    cm = evaluate_run(c.train.out, split="test").metrics
    return {"central_train_s": seconds,
            "central": {"mean_R@1": _mean_r1(cm, cols), "directions": {k: v for k, v in cm.items() if k.endswith("/R@1")},
                        "train_result": json.loads((work / "central" / "train_result.json").read_text())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=sorted(SETS), default="scenes")
    ap.add_argument("--n", type=int, default=1500, help="scenes rows")
    ap.add_argument("--sites", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10, help="centralised and single-site epochs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None, help="learning rate: the sites' local peak, and the centralised and single-site runs' (default: the config's)")
    ap.add_argument("--hidden", type=int, default=512, help="scenes head width")
    ap.add_argument("--start", choices=["closed_form", "scratch", "auto"], default="closed_form",
                    help="the federation's start (auto: both, the better on the sites' pooled val R@1)")
    ap.add_argument("--scratch", action="store_true", help="also federate from scratch (no closed-form start)")
    ap.add_argument("--joint", action="store_true", help="also the closed form over every view, gates 0, all "
                    "fine-tuned (the design before the hybrid start)")
    ap.add_argument("--hybrid-rounds", type=int, default=None, help="hybrid: rounds that hold the closed-form "
                    "views still (default: the federation's, 60 %% of --rounds)")
    ap.add_argument("--dp-clip", type=float, default=0.0, help="0: median site update norm of the plain run")
    ap.add_argument("--dp-noise", type=float, default=0.002)
    ap.add_argument("--only-dp", action="store_true", help="run only the DP stage, adding it to --out")
    ap.add_argument("--stages", default="fed,central,singles,dp", help="comma-separated: fed, central, singles, dp")
    ap.add_argument("--merge", action="store_true", help="keep the other stages' results already in --out "
                    "(run the stages in separate invocations with the same settings)")
    ap.add_argument("--reuse-central", action="store_true", help="evaluate the centralised run folder this script "
                    "trained earlier under --work when its config is the same, instead of training it again")
    ap.add_argument("--central-from", default=None, help="take the centralised result from an earlier results "
                    "file of this script (same set, n, epochs, splits) instead of training it (--stages without central)")
    ap.add_argument("--route", action="store_true", help="per-pair routing after the rounds (federate/routing.py); "
                    "the result then also holds the same best round's joint model alone (`joint_only`)")
    ap.add_argument("--strategy", default="fedavg", help="fedavg | fedprox | fedadam | fedyogi (the main federation)")
    ap.add_argument("--proximal-mu", type=float, default=0.0, help="FedProx: the proximal term's weight")
    ap.add_argument("--server-lr", type=float, default=None, help="the server step (FedAdam/FedYogi eta, default "
                    "0.1; FedAvgM default 1.0)")
    ap.add_argument("--average-last", type=int, default=None, help="the mean of the last N rounds as a candidate "
                    "(default: the federation's)")
    ap.add_argument("--server-momentum", type=float, default=0.9, help="FedAvgM: the server's momentum")
    ap.add_argument("--all-views", action="store_true", help="every site holds every view (a diagnostic)")
    ap.add_argument("--seed", type=int, default=0, help="partition, initialisation and batch order (the data and "
                    "its splits stay those of seed 0); use another --work per seed")
    ap.add_argument("--work", default="/tmp/crossalign-fed-bench")
    ap.add_argument("--out", default="benchmarks/results/federated.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("crossalign.federate").setLevel(logging.INFO)

    from crossalign.data.manifest import load_manifest, write_manifest
    from crossalign.datasets.registry import make_dataset
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.federate.config import FederationConfig, parse_site_modalities
    from crossalign.federate.partition import partition_rows
    from crossalign.federate.site import Site, site_run_config
    from crossalign.recipes.align import ensure_splits, prepare_features, train

    spec = dict(SETS[args.set])
    if args.all_views:  # a diagnostic: every site holds every view
        spec["views"] = ""
    stages = set(args.stages.split(","))
    if stages - {"fed", "central", "singles", "dp"}:
        ap.error("--stages: fed, central, singles, dp")
    work = Path(args.work) / args.set
    data = work / (f"data-{args.n}" if args.set == "scenes" else "data")
    if not (data / "manifest.jsonl").exists():
        make_dataset(args.set, data, **({"n": args.n, "seed": 0} if args.set == "scenes" else {}), progress=True)
    cfg = _config(args, data)
    cols = cfg.model.columns
    res: dict[str, Any] = {"set": args.set, "sites": args.sites, "alpha": args.alpha, "partition_key": spec["key"],
                           "site_modalities": spec["views"], "rounds": args.rounds, "local_epochs": args.local_epochs,
                           "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "hybrid_rounds": args.hybrid_rounds,
                           "start": args.start, "seed": args.seed, "route": args.route, "strategy": args.strategy, "server_lr": args.server_lr,
                           "server_momentum": args.server_momentum, "average_last": args.average_last,
                           "proximal_mu": args.proximal_mu, "load_before": _uptime()}
    if args.set == "scenes":
        res.update({"n": args.n, "hidden": args.hidden})
    if args.merge and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        differ = [k for k in ("set", "sites", "alpha", "rounds", "local_epochs", "epochs", "batch_size", "n", "hidden",
                                "hybrid_rounds", "start", "seed")
                  if k in res and old.get(k, 0 if k == "seed" else None) != res[k]]  # files before --seed: 0
        if differ:
            ap.error(f"--merge: {args.out} was run with other settings ({differ})")
        res = {**old, **res, "load_before": old.get("load_before"), "load_before_merge": res["load_before"]}

    def save() -> None:  # after every stage, so a run cut short still leaves its figures
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2, default=str))

    if args.only_dp:  # the DP stage alone, added to an earlier run's results
        res = {**json.loads(Path(args.out).read_text()), "load_before_dp": _uptime()}
        fed = FederationConfig(run=copy.deepcopy(cfg), sites=args.sites, partition=f"dirichlet:{args.alpha}",
                               partition_key=spec["key"], site_modalities=parse_site_modalities(spec["views"]),
                               rounds=res["rounds"], local_epochs=res["local_epochs"], timeout=3600)
        return _dp(args, fed, cfg, res, work, save)
    t = time.time()
    prepare_features(cfg, progress=False)  # pooled cache (the centralised baseline's)
    res["pooled_features_s"] = round(time.time() - t, 1)
    fed = FederationConfig(run=copy.deepcopy(cfg), sites=args.sites, partition=f"dirichlet:{args.alpha}",
                           partition_key=spec["key"], site_modalities=parse_site_modalities(spec["views"]),
                           rounds=args.rounds, local_epochs=args.local_epochs, hybrid_rounds=args.hybrid_rounds,
                           route=args.route,
                           start=args.start, strategy=args.strategy, proximal_mu=args.proximal_mu,
                           server_lr=args.server_lr, server_momentum=args.server_momentum, timeout=3600,
                           **({} if args.average_last is None else {"average_last": args.average_last}))
    m = ensure_splits(load_manifest(data), cfg.train.seed)
    parts = partition_rows(m, "dirichlet", args.alpha, args.sites, cfg.train.seed, spec["key"])
    res["site_rows"] = [len(p) for p in parts]
    res["site_key_values"] = [len({m.rows[int(i)].get(spec["key"]) for i in p}) for p in parts]
    t = time.time()
    for s in range(args.sites):  # each site extracts its own features into its own cache (timed once)
        Site(fed, s)
    res["site_features_s"] = round(time.time() - t, 1)

    if "fed" in stages:
        res["fed"] = _federate(fed, work / "fed", cols)
        save()

    if "central" in stages:
        res.update(_central(args, cfg, work, cols))
        save()
    elif args.central_from:
        old = json.loads(Path(args.central_from).read_text())
        if any(old.get(k, 0 if k == "seed" else None) != res.get(k)
               for k in ("set", "n", "epochs", "batch_size", "hidden", "sites", "alpha", "seed")):
            ap.error(f"--central-from: {args.central_from} was run on another set or settings")
        res.update({"central": old["central"], "central_train_s": old["central_train_s"], "central_from": args.central_from})
        save()

    if args.joint:  # the closed form over every view (radar from its raw input), gates 0, everything fine-tuned
        jfed = copy.deepcopy(fed)
        jfed.hybrid = False
        res["fed_joint"] = _federate(jfed, work / "fed-joint", cols)
        save()

    if args.scratch:  # the earlier design: FedAvg from randomly initialised heads
        sfed = copy.deepcopy(fed)
        sfed.start = "scratch"
        sfed.run.model.head.linear_path = cfg.model.head.linear_path
        res["fed_scratch"] = _federate(sfed, work / "fed-scratch", cols)
        save()

    if "singles" in stages:
        if not {"fed", "central"} <= set(res):
            ap.error("--stages singles needs the fed and central results (run them too, or --merge)")
        singles = []
        for s in range(args.sites):
            sc = site_run_config(fed, s)
            sc.model.head.linear_path = cfg.model.head.linear_path  # the site trains as `train` would, start auto
            rows = [{**m.rows[int(i)]} for i in parts[s]]
            write_manifest(rows, data / f"manifest-site{s}.jsonl")
            sc.train.data, sc.train.out = str(data / f"manifest-site{s}.jsonl"), str(work / f"site{s}")
            train(sc, resume=False)
            sm = evaluate_run(sc.train.out, data=data, split="test").metrics
            own = sc.model.columns
            singles.append({"site": s, "views": own, "rows": len(rows), "mean_R@1": _mean_r1(sm, own),
                            "fed_same_directions": _mean_r1(res["fed"]["directions"], own),
                            "central_same_directions": _mean_r1(res["central"]["directions"], own)})
            res["single_sites"] = singles
            save()

    if "dp" in stages:
        _dp(args, fed, cfg, res, work, save)
    else:
        res["load_after"] = _uptime()
        save()
        if "fed" in res and "central" in res:
            print(table(res))
            res["table"] = table(res)
            save()


def _dp(args: argparse.Namespace, fed: Any, cfg: Any, res: dict[str, Any], work: Path, save: Any) -> None:
    """Client-level DP covers round updates only, so it federates from scratch (the closed-form start's
    statistics would leave the sites without noise)."""
    dfed = copy.deepcopy(fed)
    dfed.start, dfed.run.model.head.linear_path = "scratch", cfg.model.head.linear_path
    dfed.dp_clip, dfed.dp_noise = args.dp_clip or res["fed"]["median_update_norm"], args.dp_noise
    dfed.__post_init__()
    res["fed_dp"] = _federate(dfed, work / "fed-dp", cfg.model.columns)
    res["load_after"] = _uptime()
    save()  # before the table: a results file without every stage still keeps this one
    print(table(res))
    res["table"] = table(res)
    save()


def table(res: dict[str, Any]) -> str:
    central, fed = res["central"], res["fed"]  # needs the centralised stage
    scratch = SETS[res["set"]].get("scratch", [])
    rows: list[tuple[str, dict[str, Any] | None]] = [
        ("centralised, pooled data (`train.start: auto`, winner: "
         f"{central['train_result'].get('winner')})", central)]
    cf = fed["closed_form"]
    if cf:
        hyb = f", from-scratch {cf['hybrid_scratch_views']} trained into it" if cf.get("hybrid_scratch_views") else ""
        rows.append((f"federated closed-form start only (round 0; {cf['params']}{hyb})", None))
    hr = res.get("hybrid_rounds") or max(1, round(0.6 * res["rounds"]))
    phase = (f"; fitted views held still {'every round' if hr >= res['rounds'] else f'rounds 1-{hr}, then all fine-tuned'}"
             if cf and cf.get("hybrid_scratch_views") else "")
    how = {"scratch": "from scratch", "closed_form": "closed-form start"}
    start = how.get(res.get("start", "closed_form"), "")
    if fed.get("winner"):  # start auto: both federations ran, the better on the sites' val is kept
        start = (f"start auto (winner {fed['winner']}; best val " + ", ".join(
            f"{k} {c['best_val_R@1']:.3f}" for k, c in fed["candidates"].items()) + ")")
    rows.append((f"federated: {start} + FedAvg {res['rounds']} rounds x {res['local_epochs']} local epochs"
                 f"{phase} (best round {fed['best_round']})", fed))
    if "fed_joint" in res:
        rows.append(("federated: closed form over every view (gates 0), all fine-tuned "
                     f"(best round {res['fed_joint']['best_round']})", res["fed_joint"]))
    if "fed_scratch" in res:
        rows.append((f"federated FedAvg from scratch (best round {res['fed_scratch']['best_round']})", res["fed_scratch"]))
    if "fed_dp" in res:  # a run cut short before its last stage still prints the rest
        p = res["fed_dp"]["privacy"]
        rows.append((f"federated from scratch + client DP (z={p['noise_multiplier']}, clip {p['clipping_norm']:.3g}; "
                     f"eps={p['epsilon']:.3g} at delta={p['delta']:g})", res["fed_dp"]))
    extra = ["without " + "/".join(scratch), "with " + "/".join(scratch)] if scratch else []
    lines = ["| system | test mean R@1 | vs centralised | " + " | ".join(extra) + (" |" if extra else ""),
             "|---|---|---|" + "---|" * len(extra)]
    for name, r in rows:
        if r is None:
            lines.append(f"| {name} | val {cf['val_R@1']:.3f} | |" + " |" * len(extra))
            continue
        sp = _split_r1(r["directions"], scratch) if scratch else {}
        cells = [format(sp[k], ".3f") for k in ("frozen_views", "scratch_views")] if sp else [""] * len(extra)
        lines.append(f"| {name} | {r['mean_R@1']:.3f} | {r['mean_R@1'] / central['mean_R@1']:.2f}x |"
                     + "".join(f" {c} |" for c in cells))
    if res.get("single_sites"):
        lines += ["", "| site | rows | views | its own model | federated, same directions | centralised, same directions |",
                  "|---|---|---|---|---|---|"]
        for s in res["single_sites"]:
            lines.append(f"| {s['site']} | {s['rows']} | {','.join(s['views'])} | {s['mean_R@1']:.3f} | "
                         f"{s['fed_same_directions']:.3f} | {s['central_same_directions']:.3f} |")
        best = max(res["single_sites"], key=lambda x: x["mean_R@1"])
        lines += ["", f"best single site: {best['site']} at {best['mean_R@1']:.3f}; federated on its directions "
                  f"{best['fed_same_directions']:.3f} ({best['fed_same_directions'] - best['mean_R@1']:+.3f})"]
    lines += [f"rounds to 90% of final val R@1: {fed['rounds_to_90pct']} of {res['rounds']} (0 = the closed form); "
              f"bytes per round {fed['bytes_per_round'] / 2**20:.1f} MB, closed-form start once "
              f"{(cf.get('bytes_sent', 0) + cf.get('bytes_received', 0)) / 2**20:.1f} MB; wall: federated "
              f"{fed['wall_s']} s (closed form {cf.get('seconds', 0):.0f} s, rounds {fed['round_s']:.1f} s each) vs "
              f"centralised training {res['central_train_s']} s; load {res['load_before']} -> {res.get('load_after')}"]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--table"]:  # reprint the table of a results file: --table FILE
        print(table(json.loads(Path(sys.argv[2]).read_text())))
    else:
        main()
