"""What the unpaired items do to the closed-form start at a paired fraction (no training: seconds).

For each seed, on the label-efficiency setup (`benchmarks/label_efficiency.py`: same features,
split and head), the closed form `train.start` fits on the pairs, scored on val and test (mean R@1):
  - pairs-only: input statistics on the pairs (the start of `--semi none`);
  - refit-after: the same fit, then the statistics refitted on paired + unpaired items (what
    semi-supervised runs did before the fix: a map fed inputs it was not fitted on);
  - all-items: statistics on paired + unpaired items, then the fit (what `train_semi` does now);
  - all-items+basis: also the PCA basis of each view on all its items, whitened by its diagonal
    (the all-items variances: SemiCCA with the unpaired covariance; worse);
  - semi-candidate: what `train` now does with unpaired items: `fit_closed_form(..., extra=unpaired)`
    adds a multi-view CCA whose PCA bases come from all items but whose whitening and cross-covariances
    come from the pairs (full matrices), kept when validation prefers it over the pairs-basis fit;
  - semi-candidate+routes: then each pair routed as `train.route: auto` does in a semi-supervised run
    (pairs' closed forms on inputs standardised with the unpaired items, `semi_cca` among them);
  - semi-candidate+routes-pairs-std: the same, the pairs' closed forms standardised by the pairs alone
    (what routing did before).

    python benchmarks/semi_closed_form.py --data runs/demo/data --fraction 0.1 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import label_efficiency as le  # noqa: E402

VARIANTS = ["pairs-only", "refit-after", "all-items", "all-items+basis", "semi-candidate",
            "semi-candidate+routes", "semi-candidate+routes-pairs-std"]


def _one(data: Path, fraction: float, seed: int, variant: str) -> dict[str, Any]:
    from crossalign.evaluate.closed_form import pca_basis
    from crossalign.evaluate.evaluators import RetrievalEvaluator
    from crossalign.evaluate.tuning import ViewData
    from crossalign.recipes.align import _build, _spec_for, prepare_features
    from crossalign.recipes.semi import apply_fraction
    from crossalign.semi.data import SemiData, Unpaired
    from crossalign.train import start as st
    from crossalign.train.align_task import embed_table

    cfg = le._config(data, Path("unused"), 1, seed)
    cfg.model.head.linear_path = True
    table, _ = prepare_features(cfg, progress=False)
    sd = apply_fraction(SemiData(table, Unpaired()), fraction, cfg)
    tr, va, te = (sd.table.split(s) for s in ("train", "val", "test"))
    specs = {v.column: _spec_for(v, sd.table) for v in cfg.model.views}
    u = sd.unpaired.features
    model = _build(cfg, specs, tr, None if variant in ("pairs-only", "refit-after") else u)
    semi = variant.startswith("semi-candidate")
    allf = {c: torch.from_numpy(np.concatenate([tr.features[c], u[c]])) for c in cfg.model.columns}
    orig = st.ViewData.fit
    if variant == "all-items+basis":  # each view's PCA basis from all its items (found by its width)
        std = {c: model.linear[c].norm(allf[c].float()).flatten(1).numpy() for c in cfg.model.columns}

        def fit(train, val, max_k=512, spec_key=(), standardize=True):  # type: ignore[no-untyped-def]
            x = next(v for v in std.values() if v.shape[1] == train.shape[1])
            b = pca_basis(x, max_k, standardize)
            return ViewData(b, b.scores(train).astype(np.float64), b.scores(val).astype(np.float64),
                            train.reshape(len(train), -1), val.reshape(len(val), -1), spec_key)
        st.ViewData.fit = fit  # type: ignore[method-assign]
    try:
        cf = st.fit_closed_form(model, tr, va, seed=seed, extra=u if semi else None)
    finally:
        st.ViewData.fit = orig  # type: ignore[method-assign]
    assert cf is not None
    st.apply_closed_form(model, cf)
    if variant == "refit-after":
        model.fit_normalizers(allf)
    model.eval()
    routes = {}
    if "+routes" in variant:
        from crossalign.train.routing import choose_routes, routed_model

        choice = choose_routes(model, cfg, tr, va, seed=seed, extra=None if variant.endswith("pairs-std") else u)
        routes = {k: r["chosen"] for k, r in choice.report.items()}
        model = routed_model(model, cfg, choice)[0] if choice.routes else model
    score = {s: RetrievalEvaluator(t.groups())(embed_table(model, t))["mean/R@1"] for s, t in (("val", va), ("test", te))}
    return {"method": cf.method, "params": cf.params, **score, **({"routes": routes} if routes else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="runs/le/data")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", default="benchmarks/results/semi_closed_form.json")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    res: dict[str, dict[str, Any]] = {}
    for v in args.variants.split(","):
        res[v] = {str(s): _one(Path(args.data), args.fraction, s, v) for s in seeds}
        tests = [r["test"] for r in res[v].values()]
        res[v]["mean_test"], res[v]["sd_test"] = float(np.mean(tests)), float(np.std(tests, ddof=1)) if len(tests) > 1 else 0.0
        print(f"{v:16s} " + "  ".join(f"seed {s}: test {res[v][str(s)]['test']:.3f} (val {res[v][str(s)]['val']:.3f})"
                                     for s in seeds) + f"  mean {res[v]['mean_test']:.3f}", flush=True)
    load = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    out = {"command": "python benchmarks/semi_closed_form.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
           "fraction": args.fraction, "results": res, "uptime": load}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out} ({load})")


if __name__ == "__main__":
    main()
