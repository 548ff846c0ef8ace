"""Federation pieces that need no Flower engine: config parsing, partitions, aggregation, privacy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from crossalign.data.manifest import Manifest
from crossalign.federate.config import FederationConfig, parse_partition, parse_site_modalities
from crossalign.federate.params import aggregate_per_parameter
from crossalign.federate.partition import partition_rows
from crossalign.federate.privacy import _delta, epsilon_for


def _manifest(n: int = 400, labels: int = 8, seed: int = 0) -> Manifest:
    rng = np.random.default_rng(seed)
    rows = [{"id": i, "text": f"t{i}", "group": f"g{i // 2}", "label": f"c{rng.integers(labels)}",
             "site": ["x", "y", "z"][i // 2 % 3]} for i in range(n)]
    return Manifest(rows)


def test_parse_partition_and_site_modalities() -> None:
    assert parse_partition("iid") == ("iid", None)
    assert parse_partition("dirichlet:0.3") == ("dirichlet", 0.3)
    assert parse_partition("column:site") == ("column", "site")
    for bad in ("dirichlet:x", "dirichlet:-1", "column:", "shards:3", "iid:2"):
        with pytest.raises(ValueError):
            parse_partition(bad)
    assert parse_site_modalities("0=image,text; 1=text,audio") == {0: ["image", "text"], 1: ["text", "audio"]}
    for bad in ("0=image", "a=image,text", "0:image,text"):
        with pytest.raises(ValueError):
            parse_site_modalities(bad)


@pytest.mark.parametrize("spec", ["iid", "dirichlet:0.3", "column:site"])
def test_partitions_are_disjoint_cover_all_rows_and_keep_groups(spec: str) -> None:
    m = _manifest()
    kind, arg = parse_partition(spec)
    parts = partition_rows(m, kind, arg, 3, seed=1)
    allrows = np.concatenate(parts)
    assert sorted(allrows.tolist()) == list(range(len(m)))
    for p in parts:
        assert len(p) >= 8
        groups = {m.rows[i]["group"] for i in p}
        assert sum(m.rows[i]["group"] in groups for i in range(len(m))) == len(p)  # whole groups only
    if kind == "column":
        assert [{m.rows[i]["site"] for i in p} for p in parts] == [{"x"}, {"y"}, {"z"}]


def test_dirichlet_is_non_iid_and_iid_is_not() -> None:
    m = _manifest(n=1200)

    def skew(parts: list[np.ndarray]) -> float:  # mean total-variation distance of site label mix to the pool
        labels = sorted({r["label"] for r in m.rows})
        pool = np.array([sum(r["label"] == c for r in m.rows) for c in labels], float)
        pool /= pool.sum()
        tv = []
        for p in parts:
            h = np.array([sum(m.rows[i]["label"] == c for i in p) for c in labels], float)
            tv.append(0.5 * np.abs(h / h.sum() - pool).sum())
        return float(np.mean(tv))

    assert skew(partition_rows(m, "dirichlet", 0.1, 4, seed=0)) > 0.2
    assert skew(partition_rows(m, "iid", None, 4, seed=0)) < 0.12


def test_column_partition_names_the_problem() -> None:
    m = _manifest()
    with pytest.raises(ValueError, match="names 3 sites"):
        partition_rows(m, "column", "site", 2)
    m.rows[5].pop("site")
    with pytest.raises(ValueError, match="no 'site' value"):
        partition_rows(m, "column", "site", 3)


def test_per_parameter_aggregation_weights_only_the_sites_that_trained() -> None:
    rng = np.random.default_rng(0)
    cur = {k: rng.normal(size=(3, 4)).astype(np.float32) for k in ("heads.image.w", "heads.text.w", "heads.audio.w")}
    a = {"heads.image.w": np.ones((3, 4), np.float32), "heads.text.w": np.full((3, 4), 2, np.float32)}
    b = {"heads.text.w": np.full((3, 4), 5, np.float32)}
    new, count = aggregate_per_parameter(cur, [(10.0, a), (30.0, b)])
    assert count == {"heads.image.w": 1, "heads.text.w": 2, "heads.audio.w": 0}
    assert np.array_equal(new["heads.image.w"], a["heads.image.w"])  # site b never drags it back
    np.testing.assert_allclose(new["heads.text.w"], (10 * 2 + 30 * 5) / 40, rtol=1e-7)
    assert new["heads.audio.w"].tobytes() == cur["heads.audio.w"].tobytes()  # nobody trained it: bit-identical
    with pytest.raises(ValueError, match="does not have"):
        aggregate_per_parameter(cur, [(1.0, {"heads.radar.w": np.zeros(1)})])


def test_epsilon_of_composed_gaussian_rounds() -> None:
    eps = epsilon_for(1.0, 1, 1e-5)
    assert abs(_delta(eps, 1.0) - 1e-5) < 1e-9  # the reported epsilon meets delta exactly
    # never looser than the classical single-release bound sqrt(2 ln(1.25/delta)) / z
    assert eps <= math.sqrt(2 * math.log(1.25 / 1e-5))
    assert epsilon_for(1.0, 20, 1e-5) > epsilon_for(1.0, 5, 1e-5) > eps  # composition costs
    assert epsilon_for(4.0, 20, 1e-5) < epsilon_for(1.0, 20, 1e-5)  # more noise, less cost
    assert epsilon_for(0.0, 3, 1e-5) == math.inf and epsilon_for(1.0, 0, 1e-5) == 0.0
    mu = math.sqrt(20) / 0.002  # tiny noise: a huge but finite epsilon (about mu^2 / 2), no overflow
    assert mu**2 / 2 < epsilon_for(0.002, 20, 1e-5) < mu**2


def test_config_validation() -> None:
    from crossalign.config import RunConfig

    run = RunConfig.from_dict({"model": {"views": [{"column": "text"}, {"column": "image"}]}})
    for strategy in ("fedadam", "fedavgm"):
        with pytest.raises(ValueError, match="FedAvg/FedProx"):
            FederationConfig(run=run, strategy=strategy, dp_clip=1.0, dp_noise=1.0, start="scratch")
    with pytest.raises(ValueError, match="server_momentum"):
        FederationConfig(run=run, strategy="fedavgm", server_momentum=1.0)
    with pytest.raises(ValueError, match="average_last"):
        FederationConfig(run=run, average_last=-1)
    with pytest.raises(ValueError, match="start scratch"):  # DP does not cover the closed-form statistics
        FederationConfig(run=run, dp_clip=1.0, dp_noise=1.0)
    with pytest.raises(ValueError, match="both"):
        FederationConfig(run=run, dp_noise=1.0)
    with pytest.raises(ValueError, match="not views"):
        FederationConfig(run=run, sites=2, site_modalities={1: ["text", "audio"]})
    with pytest.raises(ValueError, match="sites are"):
        FederationConfig(run=run, sites=2, site_modalities={2: ["text", "image"]})
    with pytest.raises(ValueError, match="start must be"):
        FederationConfig(run=run, start="warm")
    # the closed-form start needs linear paths: its own copy of the config has them, the caller's is unchanged
    assert FederationConfig(run=run).run.model.head.linear_path and not run.model.head.linear_path
    assert not FederationConfig(run=run, start="scratch").run.model.head.linear_path
    auto = FederationConfig(run=run, start="auto", rounds=3)  # both starts; each candidate as if named alone
    assert not auto.run.model.head.linear_path
    cf = auto.candidate("closed_form")
    assert cf.run.model.head.linear_path and cf.start == "closed_form"
    assert not auto.candidate("scratch").run.model.head.linear_path and auto.candidate("scratch").rounds == 3
    with pytest.raises(ValueError, match="closed_form or scratch"):
        auto.candidate("auto")
    with pytest.raises(ValueError, match="start scratch"):
        FederationConfig(run=run, start="auto", dp_clip=1.0, dp_noise=1.0)
    with pytest.raises(ValueError, match="hybrid_rounds"):
        FederationConfig(run=run, hybrid_rounds=0)
    assert [FederationConfig(run=run, rounds=r).held_rounds() for r in (1, 2, 5, 10)] == [1, 1, 3, 6]
    assert FederationConfig(run=run, rounds=5, hybrid_rounds=5).held_rounds() == 5
    fed = FederationConfig(run=run, sites=4, fraction_fit=0.5, min_sites=0, hybrid_rounds=2)
    assert fed.sampled_per_round() == 2 and fed.required_per_round() == 2
    assert FederationConfig.from_dict(__import__("json").loads(fed.to_json())).to_json() == fed.to_json()


def test_cli_rejects_bad_options_without_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from crossalign.cli import app

    (tmp_path / "m.jsonl").write_text('{"text": "a red circle", "image": "a.png"}\n')
    r = CliRunner().invoke(app, ["federate", "--data", str(tmp_path / "m.jsonl"), "--modalities", "text,image",
                                 "--sites", "2", "--partition", "shards:2", "--out", str(tmp_path / "o")])
    flat = " ".join(r.output.replace("│", " ").split())  # typer wraps usage errors in a box at the terminal width
    assert r.exit_code == 2 and "iid, dirichlet:ALPHA or column:NAME" in flat
    assert "Traceback" not in r.output


@pytest.fixture()
def task_identity():  # type: ignore[no-untyped-def]
    """Flower stamps run/node ids on every Message it builds; outside an app we set them ourselves."""
    from flwr.supercore.task_identity import TaskIdentity

    old = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = old


def _reply(site: int, arrays: dict[str, np.ndarray], n: float):  # type: ignore[no-untyped-def]
    from flwr.app import Message, MessageType, MetricRecord, RecordDict

    from crossalign.federate.params import to_record_np

    ins = Message(RecordDict({}), dst_node_id=100 + site, message_type=MessageType.TRAIN)
    return Message(RecordDict({"arrays": to_record_np(arrays), "metrics": MetricRecord(
        {"num-examples": n, "train-loss": 1.0, "site": float(site)})}), reply_to=ins)


@pytest.mark.parametrize("strategy,dp", [("fedavg", False), ("fedavgm", False), ("fedadam", False), ("fedyogi", False),
                                         ("fedavg", True)])
def test_flower_strategies_leave_a_head_nobody_trained_bit_identical(task_identity, strategy: str, dp: bool) -> None:  # type: ignore[no-untyped-def]
    from flwr.app import ArrayRecord

    from crossalign.config import RunConfig
    from crossalign.federate.params import from_record, to_record_np
    from crossalign.federate.record import FederationRecord
    from crossalign.federate.strategy import build_strategy

    run = RunConfig.from_dict({"model": {"views": [{"column": "image"}, {"column": "text"}, {"column": "audio"}]}})
    fed = FederationConfig(run=run, sites=2, strategy=strategy, site_modalities={0: ["image", "text"], 1: ["text", "image"]},
                           dp_clip=1.0 if dp else 0.0, dp_noise=0.01 if dp else 0.0, start="scratch")
    rec = FederationRecord(config={})
    strat = build_strategy(fed, rec)
    rng = np.random.default_rng(0)
    cur = {k: rng.normal(size=(4, 3)).astype(np.float32) for k in ("heads.image.w", "heads.text.w", "heads.audio.w")}
    init_audio = cur["heads.audio.w"].copy()
    for rnd in (1, 2):
        strat.current = {k: v.copy() for k, v in cur.items()}
        inner = strat.inner.strategy if dp else strat.inner
        if dp:
            strat.inner.current_arrays = to_record_np(cur)
        if strategy == "fedavgm":  # FedAvgM keeps an ArrayRecord, FedAdam/FedYogi a dict
            inner.current_arrays = to_record_np(cur)
        elif hasattr(inner, "current_arrays"):
            inner.current_arrays = {k: v.copy() for k, v in cur.items()}
        a = {"heads.image.w": cur["heads.image.w"] + 0.1, "heads.text.w": cur["heads.text.w"] - 0.1}
        b = {"heads.text.w": cur["heads.text.w"] + 0.3, "heads.image.w": cur["heads.image.w"] + 0.1}
        agg, _ = strat.aggregate_train(rnd, [_reply(0, a, 10.0), _reply(1, b, 30.0)])
        assert isinstance(agg, ArrayRecord)
        new = from_record(agg)
        assert new["heads.audio.w"].tobytes() == init_audio.tobytes(), (strategy, dp, rnd)
        assert not np.array_equal(new["heads.image.w"], cur["heads.image.w"])
        if strategy == "fedavg" and not dp:
            np.testing.assert_allclose(new["heads.text.w"], cur["heads.text.w"] + (10 * -0.1 + 30 * 0.3) / 40, rtol=1e-6)
        cur = new
    r = rec.rounds[-1]
    assert r["train_failures"] == 0 and set(r["sites"]) == {"0", "1"} and r["arrays_trained"] == 2
    if dp:
        assert rec.privacy["releases"] == 2 and math.isfinite(rec.privacy["epsilon"]) and rec.privacy["epsilon"] > 0


def test_fedavgm_steps_with_momentum_and_holds_an_array_nobody_trained_this_round(task_identity) -> None:  # type: ignore[no-untyped-def]
    """Through the site-aware wrapper, Flower's FedAvgM takes step = average change + beta * last step;
    an array trained in round 1 but by no site in round 2 keeps its value exactly, momentum or not;
    a BatchNorm running statistic takes the sites' plain average every round."""
    from flwr.app import ArrayRecord, ConfigRecord

    from crossalign.config import RunConfig
    from crossalign.federate.params import from_record, to_record_np
    from crossalign.federate.record import FederationRecord
    from crossalign.federate.strategy import build_strategy

    run = RunConfig.from_dict({"model": {"views": [{"column": "image"}, {"column": "text"}]}})
    fed = FederationConfig(run=run, sites=2, strategy="fedavgm", server_momentum=0.5, start="scratch")
    assert fed.server_step() == 1.0
    strat = build_strategy(fed, FederationRecord(config={}))

    class _TwoNodes:  # all that configure_train asks of a Grid: which nodes are connected
        def get_node_ids(self) -> list[int]:
            return [101, 102]

    var = "towers.sensor.net.0.running_var"  # a BatchNorm statistic: averaged, never stepped
    cur = {"heads.image.w": np.zeros((2, 2), np.float32), "heads.text.w": np.ones((2, 2), np.float32),
           var: np.ones(1, np.float32)}
    steps = []
    for rnd, sent in ((1, ("heads.image.w", "heads.text.w", var)), (2, ("heads.image.w", var))):
        strat.current = {k: v.copy() for k, v in cur.items()}
        assert len(list(strat.configure_train(rnd, to_record_np(cur), ConfigRecord({}), _TwoNodes()))) == 2  # type: ignore[arg-type]
        a = {k: cur[k] + 0.2 for k in sent}
        agg, _ = strat.aggregate_train(rnd, [_reply(0, a, 1.0), _reply(1, a, 1.0)])
        assert isinstance(agg, ArrayRecord)
        new = from_record(agg)
        steps.append(new["heads.image.w"] - cur["heads.image.w"])
        np.testing.assert_allclose(new[var], cur[var] + 0.2, rtol=1e-6)
        if rnd == 2:
            assert new["heads.text.w"].tobytes() == cur["heads.text.w"].tobytes()
        cur = new
    np.testing.assert_allclose(steps[0], 0.2, rtol=1e-6)
    np.testing.assert_allclose(steps[1], 0.2 + 0.5 * 0.2, rtol=1e-6)


def test_best_round_does_not_depend_on_the_order_replies_arrive_in(task_identity) -> None:  # type: ignore[no-untyped-def]
    """The sites' val R@1 is summed in site order, so two rounds whose per-site scores are equal tie
    exactly and the earlier is kept, whichever site answers first (one federation kept round 6 in one
    run and round 9 in another from identical per-site scores)."""
    from flwr.app import Message, MessageType, MetricRecord, RecordDict

    from crossalign.config import RunConfig
    from crossalign.federate.record import FederationRecord
    from crossalign.federate.strategy import build_strategy

    def ev(site: int, val: float, n: float) -> Message:
        ins = Message(RecordDict({}), dst_node_id=100 + site, message_type=MessageType.EVALUATE)
        return Message(RecordDict({"metrics": MetricRecord({"val-R@1": val, "num-examples": n, "site": float(site)})}),
                       reply_to=ins)

    run = RunConfig.from_dict({"model": {"views": [{"column": "image"}, {"column": "text"}]}})
    fed = FederationConfig(run=run, sites=3, start="scratch")
    # per-site scores whose weighted float sum depends on the order: 0.1 + 0.2 + 0.3 style rounding
    scores = [(0, 0.1, 37.0), (1, 0.7, 41.0), (2, 0.3, 35.0)]
    for rnd_order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        strat = build_strategy(fed, FederationRecord(config={}))
        got = []
        for rnd, order in ((1, [2, 1, 0]), (2, rnd_order)):
            strat.evaluated = {"w": np.full(1, rnd, np.float32)}
            got.append(float(strat.aggregate_evaluate(rnd, [ev(*scores[i]) for i in order])["val-R@1"]))
        assert got[0] == got[1] and strat.best[1] == 1  # equal to the last bit: the earlier round kept
