"""Joint closed forms vs pairwise CCA per direction on a real set: pairwise CCA per pair, the
multi-view CCA `train.start` fits, a multi-view CCA on Nyström features (only at commit 01f6e29, where
`train/start.py` still had `_tune_kmcca`), and "block" spaces (each pair's CCA in its own block of the
shared space, raw or normalised per block). Needs `benchmarks/real.py` to have made the data.

    python benchmarks/joint_vs_pairwise.py emoji image,text,text_zh,audio
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from crossalign.cli.common import apply_cli_defaults
from crossalign.config import RunConfig
from crossalign.data.encoder_choice import recorded_encoders
from crossalign.data.manifest import load_manifest
from crossalign.evaluate.closed_form import PairScorer, l2
from crossalign.evaluate.retrieval import retrieval_metrics
from crossalign.evaluate.tuning import ViewData, tune_cca
from crossalign.recipes.align import prepare_features
from crossalign.train import start as st

name, cols = sys.argv[1], sys.argv[2].split(",")
data = f"runs/real/data/{name}"
cfg = RunConfig.from_dict({"model": {"views": [{"column": c} for c in cols]}, "train": {"data": data, "progress": False}})
apply_cli_defaults(cfg.model.views, recorded_encoders(load_manifest(data)))
table, _ = prepare_features(cfg, progress=False)
tr, va, te = table.split("train"), table.split("val"), table.split("test")
views = {c: ViewData.fit(tr.features[c], va.features[c], 256) for c in cols}
score = PairScorer(va.groups(), len(va))
pairs = [(a, b) for i, a in enumerate(cols) for b in cols[i + 1:]]
g = te.groups()

def test_dirs(emb):
    out = {}
    for a, b in pairs:
        out[f"{a}->{b}"] = retrieval_metrics(l2(emb[a]), l2(emb[b]), g)["R@1"]
        out[f"{b}->{a}"] = retrieval_metrics(l2(emb[b]), l2(emb[a]), g)["R@1"]
    return out

res = {}
t = time.time()
pw = {(a, b): tune_cca(views[a], views[b], score, max_c=256) for a, b in pairs}
res["pairwise_cca"] = {}
for (a, b), f in pw.items():
    za, zb = f.maps[0](te.features[a]), f.maps[1](te.features[b])
    res["pairwise_cca"][f"{a}->{b}"] = retrieval_metrics(l2(za), l2(zb), g)["R@1"]
    res["pairwise_cca"][f"{b}->{a}"] = retrieval_metrics(l2(zb), l2(za), g)["R@1"]
print("pairwise", time.time() - t)
t = time.time(); cf = st._tune_mcca(views, cols, score, 256); print("mcca", time.time() - t, cf.val_score, cf.params)
res["mcca"] = test_dirs({c: cf.maps[c](te.features[c]) for c in cols})
if hasattr(st, "_tune_kmcca"):
    t = time.time(); kcf = st._tune_kmcca(views, cols, score, 256, 0); print("kmcca", time.time() - t, kcf.val_score, kcf.params)
    res["kmcca"] = test_dirs({c: kcf.maps[c](te.features[c]) for c in cols})
# block space: each pair's CCA in its own block; a view's embedding concatenates its blocks
for c_per in (32, 42):
    pwc = {(a, b): tune_cca(views[a], views[b], score, max_c=c_per) for a, b in pairs}
    for norm in (False, True):
        emb = {}
        for c in cols:
            blocks = []
            for (a, b), f in pwc.items():
                n = len(te)
                if c == a:
                    z = f.maps[0](te.features[a])
                elif c == b:
                    z = f.maps[1](te.features[b])
                else:
                    z = None
                k = f.maps[0].proj.shape[1]
                blk = np.zeros((n, c_per))
                if z is not None:
                    blk[:, :k] = l2(z) if norm else z
                blocks.append(blk)
            emb[c] = np.concatenate(blocks, 1)
        res[f"blocks{c_per}{'_norm' if norm else ''}"] = test_dirs(emb)
dirs = list(res["mcca"])
print("direction".ljust(22) + "".join(k.rjust(14) for k in res))
for d in dirs + ["mean"]:
    print(d.ljust(22) + "".join(f"{(np.mean(list(r.values())) if d == 'mean' else r[d]):14.3f}" for r in res.values()))
Path(f"benchmarks/results/joint_vs_pairwise_{name}.json").write_text(json.dumps(res, indent=1))
