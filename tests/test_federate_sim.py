"""Federations in Flower's simulation engine (real Ray workers) and through the real CLI process.

Each run starts Ray and one worker per site, so these are `slow`; Flower's state goes to a
temporary FLWR_HOME and every process the engine leaves behind is stopped by PID (checked).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from fed_data import make_pairs, pair_run_config
from numeric import assert_close_scaled

pytestmark = pytest.mark.slow


def _live_children() -> list[str]:
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.fixture(scope="module")
def flwr_home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("flwr-home")
    old = os.environ.get("FLWR_HOME")
    os.environ["FLWR_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("FLWR_HOME", None)
    else:
        os.environ["FLWR_HOME"] = old


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("pairs"), n=360)


@pytest.fixture(scope="module")
def three_sites(pairs: Path, flwr_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """3 sites x 2 rounds; the model also has `sensor_b`, which no site holds; the mean of both rounds
    is scored as one more candidate (`average_last`)."""
    from crossalign.federate.config import FederationConfig
    from crossalign.federate.runner import run_federation

    out = tmp_path_factory.mktemp("fed3")
    run = pair_run_config(pairs, out, views=("text", "sensor", "sensor_b"), lr=1e-3)
    fed = FederationConfig(run=run, sites=3, rounds=2, local_epochs=2, partition="iid", timeout=600,
                           site_modalities={s: ["text", "sensor"] for s in range(3)}, start="scratch", average_last=2)
    received: list[tuple[int, str, Any]] = []
    before = set(_live_children())
    rec = run_federation(fed, out, on_receive=lambda rnd, phase, msg: received.append((rnd, phase, msg)))
    left = set(_live_children()) - before
    if left:  # a short-lived helper of the interpreter (e.g. `file -b python`) is not a leftover: give it 10 s
        import psutil

        procs = []
        for entry in left:
            try:
                procs.append(psutil.Process(int(entry.split()[0])))
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=10)
        left = {e for e in left if int(e.split()[0]) in {p.pid for p in alive}}
    return {"fed": fed, "out": out, "record": rec, "received": received, "left": left}


def test_three_sites_two_rounds_no_failures_and_rising_val(three_sites: dict[str, Any]) -> None:
    rec, out = three_sites["record"], three_sites["out"]
    assert rec.status == "completed", rec.error
    assert rec.failures == 0 and [r["train_failures"] + r["eval_failures"] for r in rec.rounds] == [0, 0]
    saved = json.loads((out / "federation.json").read_text())
    assert saved["status"] == "completed" and saved["failures"] == 0 and saved["rounds_completed"] == 2
    v1, v2 = (r["val_R@1"] for r in saved["rounds"])
    assert v2 > v1, (v1, v2)
    for r in saved["rounds"]:
        assert set(r["sites"]) == {"0", "1", "2"}
        assert all(s["bytes_received"] > 0 and s["val_R@1"] is not None for s in r["sites"].values())
        assert r["bytes_sent"] > 0 and r["seconds"] > 0
    assert (out / "rounds.png").stat().st_size > 1000
    avg = saved["averaged"]  # the mean of rounds 1 and 2, scored on the sites' val rows
    assert avg["rounds"] == [1, 2] and 0 <= avg["val_R@1"] <= 1 and avg["failures"] == {"": 0}
    result = json.loads((out / "train_result.json").read_text())
    assert avg["kept"] == (avg["val_R@1"] > max(v1, v2)) == ("averaged_rounds" in result)
    assert saved["best_val_R@1"] == (avg["val_R@1"] if avg["kept"] else max(v1, v2))
    assert not three_sites["left"], f"processes left running: {three_sites['left']}"


def test_only_head_weights_and_scalars_reach_the_server(three_sites: dict[str, Any]) -> None:
    from crossalign.federate.server import global_model
    from crossalign.federate.site import site_run_config

    fed = three_sites["fed"]
    model = global_model(fed)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {k for k in model.state_dict() if k.startswith("towers.") and ".running_" in k}
    phases = {p for _, p, _ in three_sites["received"]}
    assert phases == {"statistics", "train", "eval"}
    for rnd, phase, msg in three_sites["received"]:
        assert not msg.has_error()
        c = msg.content
        assert not c.config_records, "a site sent a ConfigRecord"
        assert list(c.metric_records) == ["metrics"]
        assert all(isinstance(v, (int, float)) for v in c["metrics"].values())
        if phase == "eval":
            assert not c.array_records
        elif phase == "train":
            keys = set(c["arrays"].keys())
            assert keys <= trainable | buffers, keys - trainable - buffers
            assert not any(".norm." in k or "sensor_b" in k for k in keys)  # no statistics, no unheld view
            own = site_run_config(fed, 0).model.columns
            assert {k.split(".")[1] for k in keys if "." in k and k.split(".")[0] in ("heads", "towers")} <= set(own)
        else:  # statistics: per-feature mean/std of the frozen text features, never rows
            arrays = {k: a.numpy() for k, a in c["arrays"].items()}
            assert set(arrays) == {"text/mean", "text/std", "text/count"}
            assert arrays["text/mean"].shape == (384,) and arrays["text/count"].shape == (1,)


def test_head_no_site_trained_is_bit_identical_to_init(three_sites: dict[str, Any]) -> None:
    from crossalign.federate.server import global_model

    init = global_model(three_sites["fed"]).state_dict()
    for name in ("best", "last"):
        final = load_file(str(three_sites["out"] / f"{name}.safetensors"))
        untouched = [k for k in final if ".sensor_b." in k and ".norm." not in k]
        assert untouched
        for k in untouched:
            assert torch.equal(final[k], init[k]), k
        assert not torch.equal(final["heads.sensor.net.0.weight"], init["heads.sensor.net.0.weight"])


def test_result_is_an_ordinary_run_folder(three_sites: dict[str, Any]) -> None:
    from crossalign.align.io import load_run
    from crossalign.evaluate.run_eval import evaluate_run

    model, cfg = load_run(three_sites["out"])
    assert cfg.model.columns == ["text", "sensor", "sensor_b"]
    m = evaluate_run(three_sites["out"], split="test").metrics
    assert m["text->sensor/R@1"] > 0.1  # chance is ~1/36


def test_one_site_one_epoch_equals_centralised_training(pairs: Path, flwr_home: Path, tmp_path: Path) -> None:
    from crossalign.federate.config import FederationConfig
    from crossalign.federate.runner import run_federation
    from crossalign.federate.server import global_model
    from crossalign.recipes.align import train

    ref_cfg = pair_run_config(pairs, tmp_path / "central", epochs=1)
    ref_cfg.train.start = "scratch"  # FedAvg trains the configured heads; compare with plain training of them
    ref_cfg.train.route = "off"  # per-pair routing happens after training; the weights compared are the trained ones
    ref_cfg.train.hubness = "off"  # so does the hubness correction (federations are never corrected)
    central, _ = train(ref_cfg, resume=False, progress=False)
    fed = FederationConfig(run=pair_run_config(pairs, tmp_path / "fed"), sites=1, rounds=1, local_epochs=1,
                           site_cache="{cache}/features", timeout=600, start="scratch")
    rec = run_federation(fed, tmp_path / "fed")
    assert rec.status == "completed" and rec.failures == 0, rec.error
    a, b = load_file(str(central / "model.safetensors")), load_file(str(tmp_path / "fed" / "model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        if not a[k].is_floating_point():  # BatchNorm's num_batches_tracked counter is not a weight: not sent
            continue
        # float32 Adam steps in another process (Ray worker, other thread count) sum in another order:
        # 2e-5 of the tensor's scale was seen on a quiet CI machine
        assert_close_scaled(b[k], a[k], rtol=1e-4, msg=k)
    init = global_model(fed).state_dict()
    assert not torch.equal(a["heads.text.net.0.weight"], init["heads.text.net.0.weight"])  # it did train


def test_a_site_that_raises_is_reported_and_fails_the_command(flwr_home: Path, tmp_path: Path) -> None:
    data = make_pairs(tmp_path / "data", n=240, sites=("a", "b", "c"), val_only_site="c")  # c cannot train
    cfg = pair_run_config(data, tmp_path / "run").to_dict()
    cfg["federation"] = {"sites": 3, "partition": "column:site", "rounds": 2, "timeout": 600}
    (tmp_path / "fed.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "FLWR_HOME": str(flwr_home), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "crossalign", "federate", str(tmp_path / "fed.yaml")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out[-3000:]
    rec = json.loads((tmp_path / "run" / "federation.json").read_text())
    assert rec["status"] == "failed" and rec["failures"] >= 1
    r1 = rec["rounds"][0]
    assert r1["train_failures"] == 1 and r1["status"] == "failed"
    assert r1["failed_sites"][0]["site"] == "2" and "needs train and val rows" in r1["failed_sites"][0]["reason"]
    assert "1 failed" in out or "failed" in out


def test_separate_processes_superlink_and_supernodes(pairs: Path, flwr_home: Path, tmp_path: Path) -> None:
    """flower-superlink + 2 flower-supernode + flwr run on localhost; all stopped by PID after."""
    import psutil

    from crossalign.federate.config import FederationConfig
    from crossalign.federate.deploy import run_deployed

    # scratch: in process mode every message starts a fresh ClientApp process that reloads the towers, and
    # the closed-form start's four messages (same client code as in simulation) would triple this test's time
    fed = FederationConfig(run=pair_run_config(pairs, tmp_path / "run", lr=1e-3), sites=2, rounds=1,
                           site_cache="{cache}/features", timeout=600, start="scratch")
    before = set(_live_children())
    rec = run_deployed(fed, tmp_path / "run", timeout=900)
    assert rec.status == "completed" and rec.failures == 0, rec.error
    assert set(rec.rounds[0]["sites"]) == {"0", "1"}
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert (tmp_path / "run" / "flower-logs" / "superlink.log").exists()
    assert set(_live_children()) - before == set()
    for name in ("superlink", "supernode-0", "supernode-1", "flwr-run"):
        pid = int(next(line for line in (tmp_path / "run" / "flower-logs" / "pids.txt").read_text().splitlines()
                       if line.startswith(name + " ")).split()[1])
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name


def test_closed_form_start_sends_only_declared_statistics(pairs: Path, flwr_home: Path, tmp_path: Path) -> None:
    """2 sites x 1 round from the federated closed form; `sensor_b` is held by no site."""
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.federate.config import FederationConfig
    from crossalign.federate.runner import run_federation
    from crossalign.federate.server import global_model

    run = pair_run_config(pairs, tmp_path / "cf", views=("text", "sensor", "sensor_b"), lr=1e-3)
    fed = FederationConfig(run=run, sites=2, rounds=1, local_epochs=1, partition="iid", timeout=600,
                           site_modalities={s: ["text", "sensor"] for s in range(2)}, route=True)
    assert fed.start == "closed_form" and fed.run.model.head.linear_path
    received: list[tuple[int, str, Any]] = []
    rec = run_federation(fed, tmp_path / "cf", on_receive=lambda rnd, phase, msg: received.append((rnd, phase, msg)))
    assert rec.status == "completed" and rec.failures == 0, rec.error
    cf = rec.closed_form
    assert cf is not None and cf["method"] == "mcca" and not any(cf["failures"].values())
    assert cf["val_R@1"] > 0.5 and rec.rounds[0]["val_R@1"] is not None  # chance is ~1/20 per site
    dims = {"text": 384, "sensor": 32}
    by_phase: dict[str, list[Any]] = {}
    for _, phase, msg in received:
        assert not msg.has_error() and not msg.content.config_records
        assert all(isinstance(v, (int, float)) for v in msg.content["metrics"].values())
        by_phase.setdefault(phase, []).append(msg)
    assert set(by_phase) == {"statistics", "closed-form:factor", "closed-form:moments", "closed-form:score",
                             "closed-form:", "train", "eval", "closed-form:route"}
    for msg in by_phase["closed-form:factor"]:  # per view: D x rank factor of its scatter, and a count
        arrays = {k: a.numpy() for k, a in msg.content["arrays"].items()}
        assert set(arrays) == {f"{c}/{k}" for c in dims for k in ("factor", "count")}
        n = int(arrays["text/count"][0])
        for c, d in dims.items():
            assert arrays[f"{c}/factor"].shape[0] == d and arrays[f"{c}/factor"].shape[1] <= min(d, n)
    for msg in by_phase["closed-form:moments"]:
        arrays = {k: a.numpy() for k, a in msg.content["arrays"].items()}
        assert set(arrays) == {"text|sensor/cross", "text|sensor/count"}
        assert arrays["text|sensor/cross"].shape == (cf["basis_dims"]["text"], cf["basis_dims"]["sensor"])
    # candidate scores, round-0 val, per-pair routing scores: scalars only
    for msg in by_phase["closed-form:score"] + by_phase["closed-form:"] + by_phase["closed-form:route"]:
        assert not msg.content.array_records or not len(msg.content["arrays"])
    init = global_model(fed).state_dict()
    best = load_file(str(tmp_path / "cf" / "best.safetensors"))
    untouched = [k for k in best if ".sensor_b." in k and ".norm." not in k]
    assert any(k.startswith("linear.") for k in untouched)
    for k in untouched:
        assert torch.equal(best[k], init[k]), k
    assert float(best["linear.text.gate"]) == 0.0 or rec.best_round != 0
    m = evaluate_run(tmp_path / "cf", split="test").metrics
    assert m["text->sensor/R@1"] > 0.3


def test_hybrid_start_trains_only_the_from_scratch_tower_into_the_fixed_closed_form(
        pairs: Path, flwr_home: Path, tmp_path: Path) -> None:
    """Two frozen text views + a from-scratch sensor tower, 2 sites x 2 rounds, `hybrid_rounds=1`: the
    closed form fits the text views only; in round 1 the sites train and send only the sensor parts (and
    the shared temperature) and the sensor tower learns into that space; round 2 fine-tunes every view.
    Site 1 holds a single fitted view (text): it sends a factor but scores nothing."""
    from crossalign.evaluate.run_eval import evaluate_run
    from crossalign.federate.config import FederationConfig
    from crossalign.federate.runner import run_federation

    run = pair_run_config(pairs, tmp_path / "hy", views=("text", "caption", "sensor"), lr=3e-3)
    fed = FederationConfig(run=run, sites=2, rounds=2, local_epochs=3, partition="iid", timeout=600, hybrid_rounds=1,
                           site_modalities={0: ["text", "caption", "sensor"], 1: ["text", "sensor"]}, route=True)
    assert fed.start == "closed_form" and fed.hybrid
    received: list[tuple[int, str, Any]] = []
    rec = run_federation(fed, tmp_path / "hy", on_receive=lambda rnd, phase, msg: received.append((rnd, phase, msg)))
    assert rec.status == "completed" and rec.failures == 0, rec.error
    cf = rec.closed_form
    assert cf is not None and cf["fitted_views"] == ["text", "caption"] and cf["hybrid_scratch_views"] == ["sensor"]
    factor_keys = [set(m.content["arrays"].keys()) for _, ph, m in received if ph == "closed-form:factor"]
    assert sorted(map(sorted, factor_keys)) == [["caption/count", "caption/factor", "text/count", "text/factor"],
                                                ["text/count", "text/factor"]]
    assert rec.rounds[0]["frozen_views"] == ["text", "caption"] and "frozen_views" not in rec.rounds[1]
    train = {rnd: [set(m.content["arrays"].keys()) for r, ph, m in received if ph == "train" and r == rnd] for rnd in (1, 2)}
    assert len(train[1]) == len(train[2]) == 2
    for keys in train[1]:  # hybrid round: the sensor parts only
        assert keys and all(".sensor." in k or k in ("logit_scale", "logit_bias") for k in keys), sorted(keys)
        assert any(k.startswith("towers.sensor.") for k in keys) and any(k.startswith("heads.sensor.") for k in keys)
    for keys in train[2]:  # then every view a site holds
        assert "linear.text.linear.weight" in keys and any(k.startswith("towers.sensor.") for k in keys)
    assert sum("linear.caption.linear.weight" in keys for keys in train[2]) == 1  # site 0 only
    last = load_file(str(tmp_path / "hy" / "last.safetensors"))
    assert float(last["linear.sensor.gate"]) != 0.0  # the sensor's head carries it (gate opened at 1)
    vals = [cf["val_R@1"]] + [r["val_R@1"] for r in rec.rounds]
    assert vals[1] > vals[0] + 0.1, vals  # round 0: a random sensor head; round 1 trains it in
    m = evaluate_run(tmp_path / "hy", split="test").metrics
    assert m["text->caption/R@1"] > 0.5 and m["text->sensor/R@1"] > 0.3, m
    _check_routing(fed, rec, received, tmp_path / "hy")


def _check_routing(fed: Any, rec: Any, received: list[tuple[int, str, Any]], out: Path) -> None:
    """Per-pair routing after the rounds: only the closed-form views' pair is routed (the sensor's pairs
    have no closed form), only scalars came back, and the saved run ranks the pair's validation rows
    exactly as the site that holds it scored the chosen route (site 1 holds one of the two views): its
    validation queries against a gallery of its validation and training rows."""
    from crossalign.align.embed import embed_table
    from crossalign.align.io import load_run
    from crossalign.federate.routing import GalleryScorer, val_then_train
    from crossalign.federate.site import Site

    routes = rec.routing["routes"]
    assert set(routes) == {"text|caption"} and routes["text|caption"]["sites_rows"] > 0
    msgs = [m for _, ph, m in received if ph == "closed-form:route"]
    assert len(msgs) == 2 and all(not m.content.array_records or not len(m.content["arrays"]) for m in msgs)
    keys = [set(next(iter(m.content.metric_records.values()))) for m in msgs]
    assert sorted(len([k for k in ks if k.startswith("text|caption/")]) > 0 for ks in keys) == [False, True]
    r = routes["text|caption"]
    model, cfg = load_run(out)
    assert cfg.model.routes.get("text|caption", {"method": "joint"})["method"] == (
        "joint" if r["chosen"] == "joint" else ("cca" if r["chosen"] == "cca" else "mix"))
    site = Site(fed, 0)
    both = val_then_train(site.val_table, site.train_table)  # val queries against val + train rows, as the site scored
    emb = embed_table(model, both, columns=["text", "caption"])
    served = GalleryScorer(site.val_table.groups(), len(site.val_table), len(both))(emb["text"], emb["caption"])
    want = r["val"]["chosen"] if r["chosen"] != "joint" else r["val"]["joint"]
    # the site scored in float64, the saved model serves float32: allow one query's near-tie to flip
    # (1 / (2 * val rows) of R@1), far less than serving another route would change
    assert abs(served - want) <= 1.0 / (2 * len(site.val_table)) + 1e-3, (served, r)


def test_start_auto_keeps_the_start_with_the_better_site_val(pairs: Path, flwr_home: Path, tmp_path: Path) -> None:
    """`start: auto` through the CLI: a federation from scratch and one from the closed form, each a run
    folder under candidates/; the better best-round val R@1 over the sites becomes the run folder itself,
    and each pair of views is served by the federation the sites' val rows prefer (printed)."""
    from typer.testing import CliRunner

    from crossalign.cli import app
    from crossalign.evaluate.run_eval import evaluate_run

    out = tmp_path / "auto"
    cfg = pair_run_config(pairs, out, lr=1e-3).to_dict()
    cfg["federation"] = {"sites": 2, "rounds": 1, "local_epochs": 1, "partition": "iid", "timeout": 600, "start": "auto"}
    (tmp_path / "fed.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["federate", str(tmp_path / "fed.yaml")])  # the CLI, in this process
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "federation.json").read_text())
    assert saved["status"] == "completed" and saved["failures"] == 0, saved["error"]
    winner = saved["winner"]
    assert f"start auto: {winner} kept" in r.output and "pair text|sensor: " in r.output
    cands = saved["candidates"]
    assert cands is not None and set(cands) == {"scratch", "closed_form"}
    for name, c in cands.items():
        own_rec = json.loads((out / "candidates" / name / "federation.json").read_text())
        assert own_rec["status"] == "completed" and own_rec["best_val_R@1"] == c["best_val_R@1"]
        assert own_rec["config"]["start"] == name and c["bytes"] > 0
    assert winner == max(cands, key=lambda k: (cands[k]["best_val_R@1"], k == "scratch"))
    assert saved["config"]["start"] == "auto"
    # per pair (the default): the pair is served by the federation its sites' val scores prefer, ties
    # to the winner; the run folder then retrieves exactly as that federation's best model
    pair = saved["per_pair"]["routes"]["text|sensor"]
    chosen = max(pair["val"], key=lambda k: (pair["val"][k], k == winner))
    assert pair["chosen"] == chosen and saved["per_pair"]["members"] == ([] if chosen == winner else [chosen])
    best = load_file(str(out / "best.safetensors"))
    kept = load_file(str(out / "candidates" / winner / "best.safetensors"))
    if chosen == winner:
        assert best.keys() == kept.keys() and all(torch.equal(best[k], kept[k]) for k in best)
    else:
        assert all(torch.equal(best[k], kept[k]) for k in kept) and any(k.startswith(f"members.{chosen}.") for k in best)
    assert json.loads((out / "train_result.json").read_text())["winner"] == winner
    served = evaluate_run(out, split="test").metrics
    assert served["text->sensor/R@1"] > 0.2
    own = evaluate_run(out / "candidates" / chosen, split="test").metrics
    assert served["text->sensor/R@1"] == own["text->sensor/R@1"] and served["sensor->text/R@1"] == own["sensor->text/R@1"]
