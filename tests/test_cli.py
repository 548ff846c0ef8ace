"""The `crossalign` command end to end through typer (same process) and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crossalign.cli import app

runner = CliRunner()


def test_config_file_matches_demo_config() -> None:
    from crossalign.recipes.demo import DEMO_CONFIG

    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "scenes.yaml").read_text())
    assert cfg["model"] == DEMO_CONFIG["model"]
    assert {k: v for k, v in cfg["train"].items() if k not in ("data", "out")} == DEMO_CONFIG["train"]


def test_train_and_eval_commands(scenes_small: Path, tmp_path: Path) -> None:
    cfg = {"model": {"views": [{"column": "text"}, {"column": "audio"}], "dim": 32, "head": {"hidden": 64}},
           "train": {"data": str(scenes_small), "out": str(tmp_path / "run"), "epochs": 2, "batch_size": 32,
                     "progress": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--epochs", "2"])
    assert r.exit_code == 0, r.output
    assert "test R@1" in r.output and (tmp_path / "run" / "model.safetensors").exists()
    assert "crossalign = " in r.output  # which candidate won, and by how much
    for png in ("curves.png", "similarity.png"):  # like `demo`, pictures land in the run folder
        assert (tmp_path / "run" / png).stat().st_size > 1000, png
    r = runner.invoke(app, ["eval", str(tmp_path / "run"), "--split", "val", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ev" / "similarity.png").exists()
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "text->audio/R@1" in m and "audio->text/MRR" in m


def test_train_from_flags(scenes_small: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", "--data", str(scenes_small), "--modalities", "text,sensor",
                            "--out", str(tmp_path / "r"), "--epochs", "1", "--no-evaluate"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert [v["column"] for v in cfg["model"]["views"]] == ["text", "sensor"]
    assert cfg["model"]["views"][1]["encoder"] == "sensor:conv2d"


def test_train_errors_are_clear(tmp_path: Path) -> None:
    r = runner.invoke(app, ["train"])
    assert r.exit_code != 0 and "CONFIG" in r.output
    (tmp_path / "m.jsonl").write_text('{"text": "a", "image": "x.png"}\n')
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "m.jsonl"), "--modalities", "text,audio"])
    assert r.exit_code != 0
    assert "audio" in str(r.exception) or "audio" in r.output


def test_data_check_reports_rows(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rows = [{"id": "a", "text": "fine", "image": "bad.png"}, {"id": "a", "text": "  ", "image": "missing.png"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    r = runner.invoke(app, ["data", "check", str(tmp_path / "m.jsonl")])
    assert r.exit_code == 1
    assert "row 1, column 'image': corrupt or unsupported image" in r.output
    assert "row 2, column 'id': duplicate id 'a'" in r.output
    assert "row 2, column 'text': empty text" in r.output
    assert "row 2, column 'image': file not found" in r.output


@pytest.mark.slow
def test_demo_subprocess(tmp_path: Path) -> None:
    """The README's main job, small: a real `crossalign demo` process with the network unused."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    exe = Path(sys.executable).parent / "crossalign"
    p = subprocess.run([str(exe), "demo", "--out", str(tmp_path / "demo"), "--n", "150", "--epochs", "3"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run = tmp_path / "demo" / "run"
    for f in ("metrics.json", "benchmark.json", "curves.png", "similarity.png", "gallery.png", "model.safetensors"):
        assert (run / f).exists(), f
    m = json.loads((run / "metrics.json").read_text())
    assert m["audio->text/R@1"] > 0.3  # well above chance (~1/15) even after 3 epochs on 150 items
    assert "scenes test R@1" in p.stdout
