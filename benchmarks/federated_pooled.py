"""Centralised training on the *pooled data of a federation*: the same rows, each with only the views
its site holds, trained as one model in one place. The like-for-like reference for
`benchmarks/federated.py` with mixed modality subsets.

`benchmarks/federated.py`'s centralised row trains on every view of every row, but on `scenes` each of
the four sites holds three of the four views of its rows: pooled, a quarter of the rows have no radar
and every radar row lacks one partner view. Here those cells are masked out: one model, the
centralised scratch candidate's config (`train` on these data keeps the scratch candidate on every
seed), trained with the ordinary `Trainer` over the pooled training rows in shuffled batches; each
pair's InfoNCE term is computed on the batch rows that hold both of its views and the terms are
averaged over the pairs as the objective does (with complete rows this is exactly `train`'s loss).
The best epoch, and the epoch budget among `--epochs`, are chosen on the pooled validation rows, each
pair scored on the rows that hold both views (the federation trains 8 rounds x 8 local epochs, so the
reference gets more than `train`'s 10 epochs too); the test split is scored with every view, as every system of `federated.py` is. No routing
(the federation has none).

    python benchmarks/federated_pooled.py --seed 0 --out benchmarks/results/federated_pooled_seed0.json
    python benchmarks/federated_pooled.py --seed 0 --all-views --epochs 10 --out ...   # must equal `train`
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import federated as fb  # noqa: E402

from crossalign.align.embed import embed_table  # noqa: E402
from crossalign.evaluate.retrieval import retrieval_metrics  # noqa: E402
from crossalign.train.align_task import AlignmentTask  # noqa: E402


def _has(table: Any, site_of_row: dict[int, int], views: dict[int, list[str]], cols: list[str]) -> dict[str, np.ndarray]:
    """{view: (N,) bool}: which rows of `table` hold each view (their site's views; all when unlisted)."""
    sites = np.array([site_of_row[int(r)] for r in table.rows])
    return {c: np.array([c in views.get(int(s), cols) for s in sites]) for c in cols}


class PartialTask(AlignmentTask):
    """`AlignmentTask` over rows that hold only some views: each pair's term on the rows holding both."""

    def __init__(self, *a: Any, has_train: dict[str, np.ndarray], has_val: dict[str, np.ndarray], **kw: Any):
        super().__init__(*a, **kw)
        self.has = {c: torch.from_numpy(h) for c, h in has_train.items()}
        self.has_val = has_val

    def training_forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        emb = {c: self.model({c: self.feats[c][idx[self.has[c][idx]]]})[c] for c in self.model.columns
               if int(self.has[c][idx].sum()) >= 2}
        terms, weights = [], []
        for a, b, w in self.pairs:
            both = self.has[a][idx] & self.has[b][idx]  # (B,) rows of the batch holding a and b
            if int(both.sum()) < 2:
                continue
            za = emb[a][self.has[b][idx][self.has[a][idx]]]  # a's rows that also hold b, in batch order
            zb = emb[b][self.has[a][idx][self.has[b][idx]]]
            g = self.groups[idx][both] if self.groups is not None else None
            out = self.objective({a: za, b: zb}, pairs=[(a, b, 1.0)], groups=g, logit_scale=self.model.scale(),
                                 logit_bias=self.model.logit_bias, dist=self.dist)
            terms.append(w * out["loss"])
            weights.append(w)
        loss = torch.stack(terms).sum() / sum(weights)
        return {"loss": loss}, self._report()

    def validate(self) -> dict[str, float]:
        emb = embed_table(self.model, self.val)
        g = self.val.groups()
        r1, mrr = [], []
        for a, b, _ in self.pairs:
            m = self.has_val[a] & self.has_val[b]
            gm = g[m] if g is not None else None
            for q, d in ((a, b), (b, a)):
                res = retrieval_metrics(emb[q][m], emb[d][m], gm)
                r1.append(res["R@1"])
                mrr.append(res["MRR"])
        return {"mean/R@1": float(np.mean(r1)), "mean/MRR": float(np.mean(mrr))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--sites", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=0.3)
    ap.add_argument("--epochs", default="10,20,40,64", help="epoch budgets tried; validation picks one")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-views", action="store_true", help="every row keeps every view: this must give "
                    "`train`'s scratch candidate (a check of this harness)")
    ap.add_argument("--work", default="/tmp/crossalign-fed-bench")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    args.set = "scenes"

    from crossalign.data.manifest import load_manifest
    from crossalign.evaluate.run_eval import evaluate_model
    from crossalign.federate.config import parse_site_modalities
    from crossalign.federate.partition import partition_rows
    from crossalign.recipes.align import _build, _spec_for, ensure_splits, prepare_features
    from crossalign.train.trainer import Trainer

    spec = fb.SETS["scenes"]
    data = Path(args.work) / "scenes" / f"data-{args.n}"
    cfg = fb._config(args, data)
    cols = cfg.model.columns
    table, _ = prepare_features(cfg, progress=False)
    m = ensure_splits(load_manifest(data), cfg.train.seed)
    parts = partition_rows(m, "dirichlet", args.alpha, args.sites, cfg.train.seed, spec["key"])
    site_of_row = {int(i): s for s, p in enumerate(parts) for i in p}
    views = {} if args.all_views else parse_site_modalities(spec["views"])
    tr, va = table.split("train"), table.split("val")
    has_tr, has_va = _has(tr, site_of_row, views, cols), _has(va, site_of_row, views, cols)
    specs = {v.column: _spec_for(v, table) for v in cfg.model.views}
    runs = []
    for epochs in [int(e) for e in args.epochs.split(",")]:
        c = copy.deepcopy(cfg)
        c.train.epochs = epochs
        model = _build(c, specs, tr)  # seeded like `train`'s scratch candidate
        # standardisation on the training rows that hold each view (what the pooled cells are)
        model.fit_normalizers({v: torch.from_numpy(np.asarray(tr.features[v])[has_tr[v]]) for v in cols})
        task = PartialTask(model, c, tr, va, has_train=has_tr, has_val=has_va)
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="crossalign-pooled-") as work:
            res = Trainer(task, work, **c.train.trainer_kwargs(len(tr))).fit(resume=False)
            task.load(Path(work), "best")
        model.eval()
        metrics = evaluate_model(model, c, table, "test").metrics
        dirs = {k: v for k, v in metrics.items() if k.endswith("/R@1") and "->" in k}
        runs.append({"epochs": epochs, "best_epoch": res.best_epoch, "val_mean/R@1": res.best_metric,
                     "train_s": round(time.time() - t0, 1), "mean_R@1": fb._mean_r1(metrics, cols),
                     "directions": dirs, **fb._split_r1(dirs, spec["scratch"])})
        r = runs[-1]
        print(f"seed {args.seed}, {epochs} epochs: val {r['val_mean/R@1']:.4f} (epoch {r['best_epoch']}), test mean "
              f"R@1 {r['mean_R@1']:.3f} (without radar {r.get('frozen_views', float('nan')):.3f}, radar "
              f"{r.get('scratch_views', float('nan')):.3f}), {r['train_s']} s", flush=True)
    chosen = max(runs, key=lambda r: r["val_mean/R@1"])  # the epoch budget, chosen on validation
    out = {"seed": args.seed, "all_views": args.all_views, "n": args.n, "sites": args.sites, "alpha": args.alpha,
           "site_modalities": "" if args.all_views else spec["views"], "site_rows": [len(p) for p in parts],
           "cells_kept": {c: float(has_tr[c].mean()) for c in cols}, "runs": runs, "chosen_epochs": chosen["epochs"],
           "mean_R@1": chosen["mean_R@1"], "load": fb._uptime()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"seed {args.seed}: chosen on val {chosen['epochs']} epochs, test mean R@1 {chosen['mean_R@1']:.3f}; "
          f"cells kept {', '.join(f'{k} {v:.0%}' for k, v in out['cells_kept'].items())}; wrote {args.out}")

if __name__ == "__main__":
    main()
