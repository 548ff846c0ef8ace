"""What the slot prefix can carry: captions written from the slot heads' most likely words, no LM.

    python benchmarks/bridge_ceiling.py runs/demo/run runs/demo/data

Fits the `slots` projector's attribute heads (as `bridge train --projector slots --slot-epochs 60`
does) on the training rows of the given views, writes each test row's caption from the argmax words
with the scenes caption template and scores it like `bridge eval` (attribute accuracy parsed back
from the caption), for image and audio inputs. An upper bound for a bridge whose LM spells the
prefix exactly; writes benchmarks/results/bridge_ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--fit-on", default="image;image,text", help="view sets the heads are fitted on, ';'-separated")
    ap.add_argument("--out", default="benchmarks/results/bridge_ceiling.json")
    a = ap.parse_args()

    from crossalign.align.embedder import Embedder
    from crossalign.bridge.embeddings import aligned_embeddings
    from crossalign.bridge.slots import COLS, ROWS, SLOT_FIELDS, SlotProjector, fit_slot_heads
    from crossalign.datasets.scenes.captions import attribute_scores
    from crossalign.datasets.scenes.qa import objects_of
    from crossalign.datasets.scenes.scene import SceneObject, caption_en
    from crossalign.recipes.bridge import row_slot_targets

    table = aligned_embeddings(Embedder.from_run(a.run), a.data, progress=False)
    tr, va, te = table.where("train"), table.where("val"), table.where("test")
    dim = table.emb["image"].shape[1]
    words = {f: torch.zeros(len(v), 8) for f, v in SLOT_FIELDS} | {"none": torch.zeros(1, 8)}  # unused here
    truths = [objects_of(table.row(int(j))) for j in te]
    res: dict[str, dict[str, dict[str, float]]] = {}
    for fit in a.fit_on.split(";"):
        cols = fit.split(",")
        torch.manual_seed(0)
        p = SlotProjector(dim, 8, words, 3, 0, 1024)
        z = np.concatenate([table.emb[c][tr] for c in cols])
        val = fit_slot_heads(p, z, row_slot_targets(table, tr, cols, 3), table.emb["image"][va],
                             row_slot_targets(table, va, ["image"], 3), 60)
        res[fit] = {"slot_heads_val_image": val}
        for col in ("image", "audio"):
            with torch.no_grad():
                pres, *fields = p.logits(torch.from_numpy(table.emb[col][te]))
            caps = []
            for i in range(len(te)):
                objs = []
                for s in range(3):
                    if pres[i, s] > 0:
                        v = {name: vals[int(f[i, s].argmax())] for f, (name, vals) in zip(fields, SLOT_FIELDS)}
                        objs.append(SceneObject(v["shape"], v["color"], v["size"],
                                                (ROWS.index(v["row"]), COLS.index(v["col"]))))
                caps.append(caption_en(objs) if objs else "nothing")
            res[fit][col] = attribute_scores(caps, truths)
    print("| heads fitted on | input | attr mean | colour | shape | size | position | count |\n|---|---|---|---|---|---|---|---|")
    for fit, r in res.items():
        for col in ("image", "audio"):
            s = r[col]
            print(f"| {fit} | {col} | {s['attr/mean']:.3f} | " + " | ".join(
                f"{s['attr/' + k]:.3f}" for k in ("color", "shape", "size", "position", "count")) + " |")
    out = {"test_rows": int(len(te)), "results": res, "loadavg": os.getloadavg()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
