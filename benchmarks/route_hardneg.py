"""Hard negatives per route candidate of one pair: would routing on validation hard negatives keep
colour binding?

Stop 27's routing (candidates scored with their CSLS correction) served scenes' image <-> text by a
corrected CCA + ridge + kernel CCA mixture: text->image rose to 0.995, but the image view's colour
hard negatives fell from 0.946 (CCA alone) to 0.875. For one pair of a trained run this routes the
joint model as `train` does, then serves the pair by each single candidate and by the best mixtures
on validation in turn (every other pair as routed), corrects hubness as `train` does, and prints
validation R@1 (as routing scored it) beside validation and test R@1 and hard-negative accuracy
(overall and colour). Needs a manifest with `text_neg` (scenes). Test is read only to report.

    python benchmarks/route_hardneg.py runs/demo/run --pair image|text --out benchmarks/results/route_hardneg_scenes.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("run", type=Path)
ap.add_argument("--pair", default="image|text", help="the pair of views, 'a|b' as routes name it")
ap.add_argument("--mixtures", type=int, default=12, help="also the best N mixtures on validation")
ap.add_argument("--out", type=Path, required=True)
a = ap.parse_args()

import crossalign.train.routing as R
from crossalign.align.io import load_run
from crossalign.evaluate.run_eval import evaluate_model, load_table
from crossalign.train.hubness import choose_hubness, hub_model

saved, cfg_saved = load_run(a.run)
joint, cfg = R.joint_model(saved, cfg_saved)
table = load_table(cfg, None)
tr, va = table.split(cfg.train.train_split), table.split(cfg.train.val_split)
seen: dict[str, tuple] = {}
select = R._select


def spy(out, key, cands, mixes, fitted):  # type: ignore[no-untyped-def]
    """Keep the pair's scored candidates, mixtures and fitted modules (first call: the routed choice)."""
    if key == a.pair and key not in seen:
        seen[key] = (cands, mixes, fitted)
    return select(out, key, cands, mixes, fitted)


R._select = spy
c = copy.deepcopy(cfg)
c.train.hubness = "auto"
choice = R.choose_routes(joint, cfg, tr, va, seed=cfg.train.seed, closed_forms=R.pair_closed_forms(c), hubness=True)
R._select = select
cands, mixes, fitted = seen[a.pair]
scores = cands | {n: s for n, (_, s) in mixes.items()}
best_mixes = sorted((m for m in mixes), key=lambda m: -scores[m]["R@1"])[:a.mixtures]
va_, vb = a.pair.split("|")
rows: dict[str, dict] = {}
for m in list(cands) + best_mixes:
    route, mods = R.candidate_route(m, mixes, fitted)
    ch = copy.deepcopy(choice)
    ch.routes[a.pair] = route
    ch.state = {k: v for k, v in ch.state.items() if not k.startswith(f"router.paths.{a.pair}")}
    if m != "joint":
        ch.state.update(R._route_state(a.pair, route, mods))
    model, cc = R.routed_model(joint, cfg, ch)
    hub = choose_hubness(model, tr, va, seed=cfg.train.seed)
    if hub.hubness:
        model, cc = hub_model(model, cc, hub)
    row: dict = {"val_score": scores[m]["R@1"], "csls": hub.report.get(a.pair, {}).get("chosen"),
                 "chosen_by_routing": choice.report[a.pair]["chosen"] == m}
    for split in ("val", "test"):
        met = evaluate_model(model, cc, table, split, evaluators=("retrieval", "hardneg")).metrics
        row[split] = {k: v for k, v in met.items()
                      if k in (f"{va_}->{vb}/R@1", f"{vb}->{va_}/R@1") or k.startswith(f"{va_}/hardneg")}
    rows[m] = row
    v, t = row["val"], row["test"]
    print(f"{m:34s}{'*' if row['chosen_by_routing'] else ' '} val score {row['val_score']:.3f} ({row['csls']}) | "
          f"val hard-neg {v.get(f'{va_}/hardneg_acc', float('nan')):.3f} colour {v.get(f'{va_}/hardneg_acc/color', float('nan')):.3f} | "
          f"test {va_}->{vb} {t[f'{va_}->{vb}/R@1']:.3f} {vb}->{va_} {t[f'{vb}->{va_}/R@1']:.3f} "
          f"hard-neg {t.get(f'{va_}/hardneg_acc', float('nan')):.3f} colour {t.get(f'{va_}/hardneg_acc/color', float('nan')):.3f}",
          flush=True)
a.out.parent.mkdir(parents=True, exist_ok=True)
a.out.write_text(json.dumps({"command": "python benchmarks/route_hardneg.py " + " ".join(sys.argv[1:]),
                             "run": str(a.run), "pair": a.pair, "rows": rows,
                             "load_average": list(os.getloadavg())}, indent=1) + "\n")
print(f"wrote {a.out}")
