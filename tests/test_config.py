"""The one config base: unknown keys named, nested sections built, old flat keys mapped, one
`TrainConfig` that becomes the Trainer's arguments, objective facts read from their registry."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from crossalign.bridge.config import BridgeConfig, load_bridge_config
from crossalign.config import (AlignTrainConfig, ConfigError, HeadConfig, ModelConfig, RunConfig, TrainConfig, ViewSpec,
                               load_config)
from crossalign.federate.config import FederationConfig
from crossalign.fuse.config import TaskConfig, load_task_config
from crossalign.semi.config import SemiConfig


@pytest.mark.parametrize("cls,d,where,key", [
    (RunConfig, {"train": {"epoch": 3}}, "RunConfig.train", "epoch"),
    (RunConfig, {"model": {"views": [{"column": "text", "encodr": "x"}]}}, "RunConfig.model.views[0]", "encodr"),
    (RunConfig, {"modle": {}}, "RunConfig", "modle"),
    (TaskConfig, {"fusoin": "gated"}, "TaskConfig", "fusoin"),
    (TaskConfig, {"train": {"lr_": 1.0}}, "TaskConfig.train", "lr_"),
    (BridgeConfig, {"prefix": 2}, "BridgeConfig", "prefix"),
    (SemiConfig, {"methd": "none"}, "SemiConfig", "methd"),
    (FederationConfig, {"rounds": 2, "stratgy": "fedavg"}, "FederationConfig", "stratgy"),
])
def test_unknown_key_names_the_key_and_the_config(cls, d, where, key) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as e:
        cls.from_dict(d)
    assert str(e.value).startswith(f"{where}: unknown key '{key}'"), str(e.value)


def test_not_a_mapping_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="RunConfig.model: expected a mapping of ModelConfig fields, got list"):
        RunConfig.from_dict({"model": [1, 2]})


def test_nested_sections_become_dataclasses_and_round_trip() -> None:
    d = {"model": {"views": [{"column": "image", "options": {"grid": 3}}, {"column": "text"}], "dim": 32,
                   "head": {"kind": "linear"}}, "train": {"epochs": 3, "start": "scratch"}}
    cfg = RunConfig.from_dict(d)
    assert isinstance(cfg.model.views[0], ViewSpec) and cfg.model.views[0].options == {"grid": 3}
    assert isinstance(cfg.model.head, HeadConfig) and cfg.model.head.kind == "linear" and cfg.model.head.hidden == 1024
    assert isinstance(cfg.train, AlignTrainConfig) and (cfg.train.epochs, cfg.train.batch_size) == (3, 256)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert RunConfig.from_dict(cfg.to_dict() | {"format": 1}) == cfg  # a run's config.json carries its format


def test_yaml_error_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  views: [{column: text}]\ntrain:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: RunConfig\.train: unknown key 'epochz'"):
        load_config(f)


def test_partial_train_section_keeps_each_jobs_own_defaults() -> None:
    """A task's `train:` overlays the task's loop defaults, not the alignment run's."""
    t = TaskConfig.from_dict({"train": {"epochs": 3}}).train
    assert (t.epochs, t.batch_size, t.weight_decay, t.warmup) == (3, 64, 0.01, 0.05)
    b = BridgeConfig(train={"lr": 1e-2}).train
    assert (b.epochs, b.batch_size, b.lr, b.weight_decay) == (1, 16, 1e-2, 0.0)
    assert type(t) is TrainConfig and type(RunConfig().train) is AlignTrainConfig


def test_old_flat_keys_map_into_train() -> None:
    """task.json / bridge.json / YAML files written before the loop settings moved still load."""
    t = TaskConfig.from_dict({"task": "custom", "epochs": 2, "batch_size": 32, "seed": 5, "progress": False})
    assert (t.train.epochs, t.train.batch_size, t.seed, t.train.progress) == (2, 32, 5, False)
    with pytest.raises(ConfigError, match="'epochs' \\(older spelling of 'train.epochs'\\) is 2 but 'train.epochs' is 3"):
        TaskConfig.from_dict({"epochs": 2, "train": {"epochs": 3}})
    assert TaskConfig.from_dict({"epochs": 3, "train": {"epochs": 3}}).train.epochs == 3  # the same twice is fine


def test_load_task_config_overrides_use_the_old_names(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("fusion: gated\nepochs: 7\ntrain: {lr: 0.01}\n")
    cfg = load_task_config(f, epochs=3, seed=4, init=None)
    assert (cfg.fusion, cfg.train.epochs, cfg.train.lr, cfg.seed) == ("gated", 3, 0.01, 4)


def test_bridge_json_from_before_loads(tmp_path: Path) -> None:
    """A bridge.json written before `train` held the loop settings: flat settings + training stats."""
    old = {"run": "/r", "lm": "smollm2", "projector": "mlp", "prefix_tokens": 2, "hidden": 64,
           "train_columns": ["image"], "tasks": ["caption"], "epochs": 4, "batch_size": 8, "lr": 0.01,
           "weight_decay": 0.0, "warmup": 0.05, "seed": 3, "lora_r": 0, "format": 1, "dim": 32, "lm_hidden": 64,
           "train": {"rows": 10, "examples": 20, "columns": ["image"], "seconds": 1.0}}
    (tmp_path / "bridge.json").write_text(json.dumps(old))
    cfg = load_bridge_config(tmp_path)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.seed, cfg.prefix_tokens) == (4, 8, 0.01, 3, 2)
    new = cfg.to_dict() | {"dim": 32, "lm_hidden": 64, "stats": old["train"]}
    (tmp_path / "bridge.json").write_text(json.dumps(new))
    assert load_bridge_config(tmp_path) == cfg
    (tmp_path / "bridge.json").write_text(json.dumps(new | {"projektor": "mlp"}))
    with pytest.raises(ConfigError, match="bridge.json: unknown key 'projektor'"):
        load_bridge_config(tmp_path)


def test_trainer_kwargs_are_trainer_arguments() -> None:
    from crossalign.train.trainer import Trainer

    params = inspect.signature(Trainer.__init__).parameters
    t = TrainConfig(epochs=3, batch_size=64, lr=0.01, warmup=0.1, patience=2)
    kw = t.trainer_kwargs()
    assert set(kw) <= set(params), set(kw) - set(params)
    assert {k: kw[k] for k in ("epochs", "batch_size", "lr", "warmup", "patience")} == \
        {"epochs": 3, "batch_size": 64, "lr": 0.01, "warmup": 0.1, "patience": 2}
    assert t.trainer_kwargs(10)["batch_size"] == 10  # never more than the training items
    assert t.trainer_kwargs(10, epochs=1, batch_size=4)["batch_size"] == 4 and t.trainer_kwargs(epochs=1)["epochs"] == 1


def test_train_config_validates() -> None:
    with pytest.raises(ValueError, match="0 <= warmup < 1"):
        TrainConfig(warmup=1.5)
    with pytest.raises(ValueError, match="batch_size >= 2"):
        AlignTrainConfig(batch_size=1)  # contrastive batches need a negative
    assert TrainConfig(batch_size=1).batch_size == 1  # a bridge or task batch of one is fine


def test_objective_facts_come_from_the_registry() -> None:
    from crossalign.align.objectives import OBJECTIVES, check_objective, objective_pairs

    views = [{"column": c} for c in ("image", "text", "audio")]
    bogus = ModelConfig(views=views[:2], objective="nope")  # the leaf config knows no registry ...
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        check_objective(bogus)  # ... the registry does, before any model is built
    with pytest.raises(ValueError, match="'tri-sigmoid' takes exactly 3 views"):
        check_objective(ModelConfig(views=views[:2], objective="tri-sigmoid"))
    tri = ModelConfig(views=views, objective="tri-sigmoid", anchor="image")
    assert [p[:2] for p in objective_pairs(tri)] == [("image", "text"), ("image", "audio")]
    plain = ModelConfig(views=views, objective="infonce")
    assert [p[:2] for p in objective_pairs(plain)] == [("image", "text"), ("image", "audio"), ("text", "audio")]
    assert not OBJECTIVES["tri-sigmoid"].group_aware and OBJECTIVES["tri-sigmoid-neg"].group_aware
    assert [k for k, e in OBJECTIVES.items() if e.anchored] == ["tri-sigmoid", "tri-sigmoid-neg"]


def test_one_default_sensor_tower_rule() -> None:
    from crossalign.data.encoder_choice import choose_default, fits_rank
    from crossalign.encoders import DEFAULT_ENCODERS, default_sensor_tower
    from crossalign.fuse.config import DEFAULT_ALIGN_VIEWS

    assert [default_sensor_tower(s) for s in ((50,), (12, 10), (2, 12, 10), (2, 2, 3, 3), None)] == \
        ["sensor:conv1d", "sensor:conv2d", "sensor:conv2d", "sensor:mlp", "sensor:mlp"]
    assert DEFAULT_ENCODERS["sensor"] == default_sensor_tower(None) == choose_default("sensor", "sensor", None)[0]
    assert "use sensor:conv2d" in (fits_rank("sensor:conv1d", (2, 3, 4)) or "")
    assert "encoder" not in DEFAULT_ALIGN_VIEWS["sensor"]  # fusion defers to the rule, not a second default
