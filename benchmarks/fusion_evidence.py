"""How well the occlusion delta alone (no task training) separates contradicted from consistent
attribute words of report consistency: ROC-AUC per `word_evidence` source, with an alignment run.

    python benchmarks/fusion_evidence.py --data runs/demo/data --init runs/demo/run --n 120
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="scenes set")
    ap.add_argument("--init", required=True, help="alignment run on it (text + image views)")
    ap.add_argument("--n", type=int, default=120, help="test scenes used (occlusion encodes ~17 texts each)")
    ap.add_argument("--out", default="fusion_evidence.json")
    args = ap.parse_args()

    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from crossalign.align.io import load_run
    from crossalign.config import ViewSpec
    from crossalign.data.extract import encode_column
    from crossalign.data.features import build_view_encoder
    from crossalign.data.manifest import Manifest, load_manifest
    from crossalign.datasets.scenes.tasks import make_task_rows
    from crossalign.fuse.data import encode_occlusion, word_mask
    from crossalign.fuse.evidence import OcclusionEvidence, occlusion_delta

    t0 = time.time()
    model, rcfg = load_run(args.init)
    model.eval()
    views = {v.column: v for v in rcfg.model.views}
    m = load_manifest(args.data)
    rows = [r for r in make_task_rows(m, "report-consistency", 0) if r["split"] == "test"][: args.n]
    for r in rows:
        r["image"] = str(m.base_dir / r["image"])
    tm = Manifest(rows)
    texts = [r["text"] for r in rows]
    tenc = build_view_encoder(views["text"], tm)
    full = torch.from_numpy(encode_column(tm, "text", tenc).features)
    img = torch.from_numpy(encode_column(tm, "image", build_view_encoder(views["image"], tm), modality="image").features)
    words = torch.from_numpy(encode_column(tm, "text", build_view_encoder(
        ViewSpec(column="text", encoder="text:minilm", options={"words": 32}), tm)).features)
    wm = word_mask(texts, 32)
    with torch.no_grad():
        exact, _ = occlusion_delta(model, "text", full, encode_occlusion(texts, 32, tenc), "image", img)
        f, rest = OcclusionEvidence("text", ["image"], "tokens")._texts({"text:tokens": words}, wm)
        approx, _ = occlusion_delta(model, "text", f, rest, "image", img)
    attr = [(i, j, t == "contradicted") for i, r in enumerate(rows) for j, t in enumerate(r["tags"]) if t != "O"]
    y = np.array([a[2] for a in attr])
    out = {"n": len(rows), "attribute_words": len(y), "contradicted": int(y.sum()), "seconds": time.time() - t0,
           "load_average": os.getloadavg()}
    for name, d in (("occlusion", exact), ("occlusion-tokens", approx)):
        out[f"{name}/roc_auc"] = float(roc_auc_score(y, [float(d[i, j]) for i, j, _ in attr]))
        has = [i for i, r in enumerate(rows) if "contradicted" in r["tags"]]
        out[f"{name}/top_word_contradicted"] = sum(
            rows[i]["tags"][int(d[i, : len(rows[i]["tags"])].argmax())] == "contradicted" for i in has)
        out["captions_with_contradiction"] = len(has)
    print(json.dumps(out, indent=2))
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
