"""Pair-weighted multi-view CCA on emoji: does weighting the pairs (or choosing by the worst pair) close
the gap to pairwise CCA on text_zh<->text? Pairs are weighted by (their mean top-16 canonical correlation) ** q in the multi-view eigenproblem;
the grid point is chosen on validation by the mean pair score or by the worst pair's gap to that
pair's own tuned CCA. Needs `benchmarks/real.py` to have made the emoji data.

    python benchmarks/pair_weights.py
"""
import json
from pathlib import Path

import numpy as np

from crossalign.cli.common import apply_cli_defaults
from crossalign.config import RunConfig
from crossalign.data.encoder_choice import recorded_encoders
from crossalign.data.manifest import load_manifest
from crossalign.evaluate.closed_form import PairScorer, cca_solve, l2, mcca_solve
from crossalign.evaluate.retrieval import retrieval_metrics
from crossalign.evaluate.tuning import POWERS, ViewData, tune_cca
from crossalign.recipes.align import prepare_features

cols = ["image", "text", "text_zh", "audio"]
data = "runs/real/data/emoji"
cfg = RunConfig.from_dict({"model": {"views": [{"column": c} for c in cols]}, "train": {"data": data, "progress": False}})
apply_cli_defaults(cfg.model.views, recorded_encoders(load_manifest(data)))
table, _ = prepare_features(cfg, progress=False)
tr, va, te = table.split("train"), table.split("val"), table.split("test")
V = {c: ViewData.fit(tr.features[c], va.features[c], 256) for c in cols}
score = PairScorer(va.groups(), len(va))
pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
n = len(tr)
cross = {(i, j): V[cols[i]].tr.T @ V[cols[j]].tr / n for i, j in pairs}
var = [V[c].basis.var for c in cols]
g = te.groups()
# pairwise CCA val per pair (the reference each pair could reach alone)
ref = {}
for i, j in pairs:
    f = tune_cca(V[cols[i]], V[cols[j]], score, max_c=256)
    ref[(i, j)] = f.score
reg = 0.31622776601683794
rho = {}
for i, j in pairs:
    _, _, s = cca_solve(cross[(i, j)], var[i], var[j], reg)
    rho[(i, j)] = float(np.mean(s[:16]))
print("pair top-16 mean canonical corr", {f"{cols[i]}-{cols[j]}": round(r, 3) for (i, j), r in rho.items()})
rows = {}
for q in (0.0, 1.0, 2.0, 4.0, 8.0):
    for crit in ("mean", "worst"):
        best = None
        for reg_ in (0.1, reg, 1.0):
            w = {p: rho[p] ** q for p in pairs}
            proj, ev = mcca_solve({p: w[p] * cross[p] for p in pairs}, var, reg_, 256)
            z = [V[c].va @ proj[k] for k, c in enumerate(cols)]
            for nc in (64, 128, 256):
                for pw in POWERS:
                    sv = ev[:nc] ** pw
                    per = {p: score(z[p[0]][:, :nc] * sv, z[p[1]][:, :nc] * sv) for p in pairs}
                    key = np.mean(list(per.values())) if crit == "mean" else min(per[p] - ref[p] for p in pairs)
                    if best is None or key > best[0]:
                        best = (key, reg_, nc, pw, [pj[:, :nc] * sv for pj in proj])
        key, reg_, nc, pw, P = best
        emb = {c: l2(V[c].basis.scores(te.features[c]) @ P[k]) for k, c in enumerate(cols)}
        res = {}
        for i, j in pairs:
            a, b = cols[i], cols[j]
            res[f"{a}->{b}"] = retrieval_metrics(emb[a], emb[b], g)["R@1"]
            res[f"{b}->{a}"] = retrieval_metrics(emb[b], emb[a], g)["R@1"]
        rows[f"q={q:g} {crit}"] = res
        print(f"q={q:g} crit={crit} reg={reg_:.3g} nc={nc} pw={pw} val_key={key:.3f} test mean={np.mean(list(res.values())):.3f} "
              f"zh->en={res['text_zh->text']:.3f} en->zh={res['text->text_zh']:.3f} worst={min(res.values()):.3f}", flush=True)
Path("benchmarks/results/pair_weights_emoji.json").write_text(json.dumps(rows, indent=1))
