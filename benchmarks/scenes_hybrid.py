"""The demo's hybrid candidate alone (start=closed_form: the closed form as-is and the hybrid fine-tune),
on the demo's data, config and seed; test R@1 per direction. Needs `crossalign demo --out runs/demo`
to have made the data. The measured run used 20 hybrid epochs (`train.finetune_epochs: 20`, the
default before the hybrid got half the epochs like every fine-tuned candidate).

    python benchmarks/scenes_hybrid.py
"""
import copy
import json
import time
from pathlib import Path

from crossalign.align.io import load_run
from crossalign.config import RunConfig
from crossalign.evaluate.run_eval import evaluate_model
from crossalign.recipes.align import prepare_features, train
from crossalign.recipes.demo import DEMO_CONFIG

cfg = RunConfig.from_dict(copy.deepcopy(DEMO_CONFIG))
cfg.train.data, cfg.train.out, cfg.train.start = "runs/demo/data", "runs/hybrid", "closed_form"
cfg.train.finetune_epochs = 20
table, _ = prepare_features(cfg, progress=False)
t = time.time()
run, res = train(cfg, resume=False, table=table)
t_train = time.time() - t
model, cfg2 = load_run(run)
m = evaluate_model(model, cfg2, table, "test", prompt="a {}").metrics
out = {"train_s": t_train, "train_result": json.loads((run / "train_result.json").read_text()),
       "test": {k: m[k] for k in m if k.endswith("/R@1")}}
print(json.dumps(out, indent=1))
Path("benchmarks/results/scenes_hybrid.json").write_text(json.dumps(out, indent=1))
