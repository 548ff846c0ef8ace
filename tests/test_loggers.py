"""Experiment logging read back from each backend, and Optuna studies persisted to SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import small_config


def _cfg(data: Path, out: Path, epochs: int = 2):
    cfg = small_config(data, out, epochs=epochs, batch_size=16)
    cfg.model.views = [v for v in cfg.model.views if v.column in ("image", "text")]
    cfg.model.__post_init__()
    return cfg


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _wandb_records(path: Path) -> list:
    """Records of a `.wandb` file: a 7-byte header, then LevelDB-log framing (32 KiB blocks,
    7-byte chunk headers: crc32, length, type FULL/FIRST/MIDDLE/LAST) around protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if kind == 0:  # zero padding to the block end
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        else:
            rec = pb.Record()
            rec.ParseFromString(buf + chunk if kind == 4 else chunk)
            out.append(rec)
    return out


def test_every_backend_reads_back(scenes_small: Path, tiny_run: Path, tmp_path: Path) -> None:
    """One training run logged to jsonl, TensorBoard, MLflow (sqlite) and wandb (offline) at once."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from crossalign.recipes.align import train
    from crossalign.train.loggers import mlflow_key

    out = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'ml' / 'mlflow.db'}"
    (tmp_path / "ml").mkdir()
    os.environ["WANDB_SILENT"] = "true"
    _, res = train(_cfg(scenes_small, out), resume=False, progress=False,
                   log=["jsonl", "tensorboard", f"mlflow={uri}", "wandb"])
    epochs = _records(out / "metrics.jsonl")
    assert len(epochs) == res.epochs_run == 2
    n_steps = sum(1 for r in _records(out / "log.jsonl") if "step/loss" in r)
    assert n_steps >= 2

    # jsonl: params first, per-step terms, then the very records of metrics.jsonl
    recs = _records(out / "log.jsonl")
    assert recs[0]["params"]["train.lr"] == 1e-3 and recs[0]["params"]["model.dim"] == 32
    steps = [r for r in recs if "step/loss" in r]
    assert all({"step/lr", "step/logit_scale", "step/temperature"} <= set(r) for r in steps)
    assert "step/loss/image-text" in steps[0]  # the per-pair terms
    logged_epochs = [r for r in recs if "val/mean/R@1" in r]
    assert [r["val/mean/R@1"] for r in logged_epochs] == [r["val/mean/R@1"] for r in epochs]
    assert any(r.get("artifact", "").endswith("curves.png") for r in recs)

    # TensorBoard: event files through EventAccumulator
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    assert [round(e.value, 6) for e in ea.Scalars("val/mean/R@1")] == [round(r["val/mean/R@1"], 6) for r in epochs]
    assert len(ea.Scalars("step/loss")) == n_steps
    assert "plots/curves" in ea.Tags()["images"]
    assert ea.PluginTagToContent("hparams")  # the hyperparameters (hparams plugin)

    # MLflow through a sqlite:/// tracking URI
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    run = c.search_runs([c.get_experiment_by_name("crossalign").experiment_id])[0]
    hist = c.get_metric_history(run.info.run_id, mlflow_key("val/mean/R@1"))
    assert [round(m.value, 6) for m in sorted(hist, key=lambda m: m.step)] == \
        [round(r["val/mean/R@1"], 6) for r in epochs]
    assert run.data.params["train.lr"] == "0.001" and run.info.status == "FINISHED"
    assert [a.path for a in c.list_artifacts(run.info.run_id, "plots")] == ["plots/curves.png"]

    # wandb offline: the run file holds config, history and the saved plot
    files = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    rs = _wandb_records(files[0])
    hist_keys = {i.key or "/".join(i.nested_key) for r in rs if r.WhichOneof("record_type") == "history"
                 for i in r.history.item}
    assert {"val/mean/R@1", "step/loss", "step/lr"} <= hist_keys
    cfg_keys = {i.key for r in rs if r.WhichOneof("record_type") == "config" for i in r.config.update}
    assert "train.lr" in cfg_keys
    assert list(files[0].parent.glob("files/curves.png"))


def test_unknown_logger_is_a_usage_error(scenes_small: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crossalign.cli import app

    r = CliRunner().invoke(app, ["train", "--data", str(scenes_small), "--modalities", "image,text",
                                 "--out", str(tmp_path / "r"), "--log", "neptune"])
    assert r.exit_code == 2 and "neptune" in r.output and not (tmp_path / "r").exists()


def test_tune_resumes_from_sqlite(scenes_small: Path, tiny_run: Path, tmp_path: Path) -> None:
    import optuna

    from crossalign.recipes.tune import tune

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = _cfg(scenes_small, tmp_path / "unused", epochs=1)
    tune(cfg, trials=2, out=tmp_path / "t", epochs=1, progress=False, storage=storage)
    s = tune(cfg, trials=3, out=tmp_path / "t", epochs=1, progress=False, storage=storage)  # "interrupted" at 2
    done = [t for t in s["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 3 and sorted(t["number"] for t in done) == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "t").glob("trial-*")) == ["trial-000", "trial-001", "trial-002"]
    study = optuna.load_study(study_name="crossalign", storage=storage)
    assert study.best_value == pytest.approx(s["best_value"])


@pytest.mark.slow
def test_tune_two_workers_share_one_storage(scenes_small: Path, tiny_run: Path, tmp_path: Path) -> None:
    """Two real `crossalign tune` processes on one SQLite storage split the trials between them."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = [sys.executable, "-m", "crossalign", "tune", "--data", str(scenes_small), "--modalities", "image,text",
           "--trials", "4", "--epochs", "1", "--storage", storage, "--out", str(tmp_path / "t")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), outs
    study = optuna.load_study(study_name="crossalign", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 4 <= len(done) <= 5  # both may start a last trial at the same moment
    assert len({t.number for t in done}) == len(done)
    assert len(list((tmp_path / "t").glob("trial-*"))) == len(study.trials)


def _open_in_child(storage: str, barrier, q) -> None:  # noqa: ANN001 - multiprocessing objects
    from crossalign.recipes.tune import _open_shared

    barrier.wait()  # every worker opens the fresh storage at the same moment
    try:
        q.put(_open_shared(storage, "crossalign")._study_id)
    except Exception as e:  # the parent reports what a worker saw
        q.put(repr(e))


def test_workers_opening_a_fresh_storage_together_all_get_the_study(tmp_path: Path) -> None:
    """Optuna's schema creation races (CI saw "table studies already exists"); every worker must survive it."""
    import multiprocessing as mp

    import crossalign.recipes.tune  # noqa: F401 - imported before forking, so the children start at once

    ctx = mp.get_context("fork")
    for round_ in range(3):
        storage = f"sqlite:///{tmp_path / f'study{round_}.db'}"
        barrier, q = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_in_child, args=(storage, barrier, q)) for _ in range(4)]
        for p in procs:
            p.start()
        got = [q.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert len(set(got)) == 1 and isinstance(got[0], int), got  # one study, seen by all four
