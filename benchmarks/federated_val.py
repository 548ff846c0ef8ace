"""Validation-only comparison of federated run folders: each site's val rows (its own views), the best
round's weights, R@1 and MRR weighted by val rows. MRR breaks R@1 ties as `train.start: auto` does
centrally (four ~35-row site galleries saturate R@1). Test rows are never read.

    python benchmarks/federated_val.py NAME=RUN_FOLDER ... --out benchmarks/results/federated_val.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def site_val(folder: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    from crossalign.evaluate.evaluators import RetrievalEvaluator
    from crossalign.federate.config import FederationConfig
    from crossalign.federate.params import load_exchanged
    from crossalign.federate.site import Site
    from crossalign.train.align_task import embed_table

    fed = FederationConfig.from_dict(json.loads((folder / "federation.json").read_text())["config"])
    best = {k: v.numpy() for k, v in load_file(str(folder / "best.safetensors")).items()}
    r1, mrr, rows = [], [], []
    for s in range(fed.sites):
        site = Site(fed, s)  # its own rows and feature cache, as in the federation
        load_exchanged(site.model, best)
        site.model.eval()
        m = RetrievalEvaluator(site.val_table.groups())(embed_table(site.model, site.val_table))
        r1.append(m["mean/R@1"])
        mrr.append(m["mean/MRR"])
        rows.append(len(site.val_table))
    return {"val_R@1": float(np.average(r1, weights=rows)), "val_MRR": float(np.average(mrr, weights=rows)),
            "val_rows": rows, "rounds": fed.rounds, "local_epochs": fed.local_epochs, "start": fed.start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=RUN_FOLDER of a federation (federation.json, best.safetensors)")
    ap.add_argument("--out", default="benchmarks/results/federated_val.json")
    args = ap.parse_args()
    res = {}
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        res[name] = site_val(Path(folder))
        print(f"{name}: val R@1 {res[name]['val_R@1']:.4f}  MRR {res[name]['val_MRR']:.4f}", flush=True)
    best = max(res, key=lambda k: (round(res[k]["val_R@1"], 9), res[k]["val_MRR"]))  # type: ignore[arg-type]
    print(f"best on validation (R@1, then MRR): {best}")
    Path(args.out).write_text(json.dumps({"runs": res, "best": best,
                                          "load": Path("/proc/loadavg").read_text().split()[:3]}, indent=2))


if __name__ == "__main__":
    main()
