"""Each column gets an encoder that fits it (name and content), the CLI says which and why,
`--encoder` overrides it everywhere, and what `encode` cached is what `train` uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from crossalign.cli import app
from crossalign.data.encoder_choice import choose_default, column_language, resolve_views, script_profile
from crossalign.data.features import ViewSpec
from crossalign.data.manifest import load_manifest, write_manifest

runner = CliRunner()


def flat(output: str) -> str:
    """CLI output without rich's box drawing and line wrapping."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


def _series_manifest(folder: Path, shape: tuple[int, ...], n: int = 40, **extra: object) -> Path:
    """n rows of `sensor` arrays of one shape and English `text`; two classes."""
    rng = np.random.default_rng(0)
    (folder / "s").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        cls = i % 2
        x = rng.normal(size=shape).astype(np.float32) + (3.0 if cls else -3.0)
        np.save(folder / f"s/{i}.npy", x)
        rows.append({"id": f"r{i}", "sensor": f"s/{i}.npy", "text": ["a rising signal", "a falling signal"][cls]
                     + f" number {i}", **extra})
    return write_manifest(rows, folder / "manifest.jsonl")


def test_text_defaults_follow_script_and_column_language(tmp_path: Path) -> None:
    rows = [{"text": "a red cat", "text_zh": "一只红色的猫", "text_fr": "un chat rouge", "text_ru": "красная кошка",
             "text_neg": "a blue cat"}] * 5
    m = load_manifest(write_manifest(rows, tmp_path / "m.jsonl"))
    assert choose_default("text", "text", m)[0] == "text:minilm"
    name, _, why = choose_default("text_zh", "text", m)
    assert name == "text:e5-small" and "CJK" in why
    assert choose_default("text_fr", "text", m)[0] == "text:e5-small"  # Latin script: the name decides
    assert choose_default("text_ru", "text", m)[0] == "text:e5-small"  # Cyrillic: the content decides
    assert choose_default("text_neg", "text", m)[0] == "text:minilm"  # 'neg' is not a language
    # A plain `text` column full of Chinese is not English either.
    m2 = load_manifest(write_manifest([{"text": "红色的猫和蓝色的狗"}] * 3, tmp_path / "m2.jsonl"))
    assert choose_default("text", "text", m2)[0] == "text:e5-small"
    assert script_profile(["abc", "中文"]) == pytest.approx((0.4, 0.4))
    assert column_language("audio_pt_br") == "pt" and column_language("image_xray") is None


def test_text_in_two_languages_shares_the_multilingual_encoder(tmp_path: Path) -> None:
    from crossalign.cli.common import config_from_args

    rows = [{"id": f"r{i}", "text_zh": f"红色的猫 {i}", "text": f"a red cat {i}", "text_neg": f"a blue cat {i}"}
            for i in range(6)]
    m = write_manifest(rows, tmp_path / "m.jsonl")
    views = [ViewSpec("text_zh"), ViewSpec("text"), ViewSpec("text_neg")]
    lines = resolve_views(views, load_manifest(m))
    assert [v.encoder for v in views] == ["text:e5-small"] * 3
    assert "beside text_zh" in lines[1] and "--encoder text=text:minilm" in lines[1]
    # English alone, or English beside English, keeps the English default.
    views = [ViewSpec("text"), ViewSpec("text_neg")]
    resolve_views(views, load_manifest(m))
    assert [v.encoder for v in views] == ["text:minilm"] * 2
    # A choice someone made is never switched: --encoder on the CLI wins.
    cfg = config_from_args(None, m, "text_zh,text", None, encoders=["text=text:minilm"], announce=False)
    assert [v.encoder for v in cfg.model.views] == ["text:e5-small", "text:minilm"]
    # `encode` chooses the columns together as `train` does, and records that for `train`.
    r = runner.invoke(app, ["encode", "--data", str(m), "--encoder", "text_zh", "--encoder", "text"])
    assert r.exit_code == 0, r.output
    assert "text: text:e5-small" in flat(r.output)
    cfg = config_from_args(None, m, "text,text_neg", None, announce=False)
    assert cfg.model.views[0].encoder == "text:e5-small" and "crossalign encode" in cfg.model.views[0].why
    assert cfg.model.views[1].encoder == "text:minilm"  # both English: no second language to share with


def test_audio_defaults_by_language() -> None:
    assert choose_default("audio", "audio", None)[0] == "audio:whisper-tiny"
    assert choose_default("audio_en", "audio", None)[0] == "audio:whisper-tiny"
    for col in ("audio_fr", "audio_zh", "audio_cmn"):
        assert choose_default(col, "audio", None)[0] == "audio:whisper-base"


@pytest.mark.parametrize("shape,expected", [((50,), "sensor:conv1d"), ((12, 10), "sensor:conv2d"),
                                            ((2, 12, 10), "sensor:conv2d"), ((2, 2, 3, 3), "sensor:mlp")])
def test_sensor_default_fits_array_rank(tmp_path: Path, shape: tuple[int, ...], expected: str) -> None:
    m = load_manifest(_series_manifest(tmp_path, shape, n=4))
    views = [ViewSpec("sensor")]
    lines = resolve_views(views, m)
    assert views[0].encoder == expected and f"{len(shape)}-D" in lines[0]


def test_named_tower_that_cannot_take_the_arrays_is_a_clear_error(tmp_path: Path) -> None:
    from crossalign.encoders.sensor import SensorEncoder

    m = load_manifest(_series_manifest(tmp_path, (50,), n=4))
    with pytest.raises(ValueError, match="sensor:conv1d"):
        resolve_views([ViewSpec("sensor", "sensor:conv2d")], m)
    with pytest.raises(ValueError, match="1-D"):
        SensorEncoder("conv2d", (150,))


def test_encoder_option_parsing_and_override(tmp_path: Path) -> None:
    from crossalign.cli.common import apply_encoder_args, config_from_args

    views = apply_encoder_args([ViewSpec("image"), ViewSpec("text", "text:minilm")],
                               ['image=image:efficientnet-lite0:{"grid":2}', "text=text:e5-small"], add_missing=False)
    assert (views[0].encoder, views[0].options, views[1].encoder) == ("image:efficientnet-lite0", {"grid": 2},
                                                                      "text:e5-small")
    m = _series_manifest(tmp_path, (50,), n=4)
    cfg = config_from_args(None, m, "sensor,text", None, encoders=["sensor=sensor:mlp"], announce=False)
    assert [v.encoder for v in cfg.model.views] == ["sensor:mlp", "text:minilm"]
    assert cfg.model.views[0].why == "given"
    # Without --modalities, the --encoder columns are the views.
    cfg = config_from_args(None, m, None, None, encoders=["sensor", "text"], announce=False)
    assert [v.column for v in cfg.model.views] == ["sensor", "text"] and cfg.model.views[0].encoder == "sensor:conv1d"
    import typer

    with pytest.raises(typer.BadParameter, match="not one of the views"):
        config_from_args(None, m, "text", None, encoders=["sensor=sensor:mlp"], announce=False)


def test_what_encode_cached_is_what_train_uses(tmp_path: Path) -> None:
    from crossalign.cli.common import config_from_args
    from crossalign.data.features import build_view_encoder

    m = _series_manifest(tmp_path, (50,), n=6)
    r = runner.invoke(app, ["encode", "--data", str(m), "--encoder", 'sensor=sensor:mlp:{"dim":64}'])
    assert r.exit_code == 0, r.output
    cfg = config_from_args(None, m, "sensor,text", None, announce=False)
    v = cfg.model.views[0]
    assert (v.encoder, v.options.get("dim")) == ("sensor:mlp", 64) and "crossalign encode" in v.why
    # Same tower, same output spec as the one `encode` built.
    enc = build_view_encoder(ViewSpec("sensor", "sensor:mlp", {"dim": 64}), load_manifest(m))
    assert build_view_encoder(v, load_manifest(m)).spec.to_dict() == enc.spec.to_dict()
    # An explicit --encoder still wins over the record.
    cfg = config_from_args(None, m, "sensor,text", None, encoders=["sensor=sensor:conv1d"], announce=False)
    assert cfg.model.views[0].encoder == "sensor:conv1d"


def test_train_on_1d_series_prints_the_choice_and_records_it(tmp_path: Path) -> None:
    m = _series_manifest(tmp_path, (64,), n=40)
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(m), "--modalities", "sensor,text", "--out", str(out),
                            "--epochs", "2", "--no-evaluate"])
    assert r.exit_code == 0, r.output
    assert "sensor: sensor:conv1d" in r.output and "1-D arrays" in r.output
    choice = json.loads((out / "encoder_choice.json").read_text())
    assert choice["sensor"]["encoder"] == "sensor:conv1d" and choice["text"]["encoder"] == "text:minilm"
    # eval refuses an encoder the run was not trained with, and accepts the one it was.
    r = runner.invoke(app, ["eval", str(out), "--encoder", "sensor=sensor:mlp"])
    assert r.exit_code != 0 and "trained with sensor:conv1d" in flat(r.output)
    r = runner.invoke(app, ["eval", str(out), "--split", "val", "--encoder", "sensor=sensor:conv1d",
                            "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output


def test_data_check_fit_findings(tmp_path: Path) -> None:
    m = _series_manifest(tmp_path, (50,), n=4)
    r = runner.invoke(app, ["data", "check", str(m), "--encoder", "sensor=sensor:conv2d"])
    assert r.exit_code == 1 and "sensor:conv1d" in r.output
    r = runner.invoke(app, ["data", "check", str(m)])
    assert r.exit_code == 0 and "sensor: sensor:conv1d" in r.output

    sf.write(tmp_path / "a.wav", np.zeros(8000, np.float32), 8000)
    rows = [{"text_zh": "一只猫", "audio_fr": "a.wav", "text": "a cat"}] * 3
    m2 = write_manifest(rows, tmp_path / "m2.jsonl")
    r = runner.invoke(app, ["data", "check", str(m2), "--encoder", "text_zh=text:minilm",
                            "--encoder", "audio_fr=audio:whisper-tiny"])
    assert r.exit_code == 0, r.output  # warnings, not errors
    out = flat(r.output)
    assert "text:minilm is English-only" in out and "audio:whisper-base" in out and "8000 Hz" in out


def test_group_equal_to_label_without_split_warns(tmp_path: Path) -> None:
    from crossalign.data.fit_check import split_warnings

    rows = [{"text": f"t{i}", "label": f"c{i % 4}", "group": f"c{i % 4}"} for i in range(20)]
    m = load_manifest(write_manifest(rows, tmp_path / "m.jsonl"))
    w = split_warnings(m)
    assert len(w) == 1 and "group equals label" in w[0]
    r = runner.invoke(app, ["data", "check", str(tmp_path / "m.jsonl")])
    assert "group equals label" in flat(r.output)
    with_split = [dict(r, split="train") for r in rows]
    assert split_warnings(load_manifest(write_manifest(with_split, tmp_path / "s.jsonl"))) == []
    finer = [dict(r, group=f"g{i}") for i, r in enumerate(rows)]
    assert split_warnings(load_manifest(write_manifest(finer, tmp_path / "f.jsonl"))) == []
