"""Zero-shot prompts: given as a template or a label -> text map, or derived from the training text."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossalign.evaluate.prompts import Prompts, derive_prompts, load_prompts, prompts_for


def test_template_derived_from_training_text() -> None:
    texts = ["a photo of a cat", "a photo of a dog", "a photo of a cat", "the dog runs"]
    labels = ["cat", "dog", "cat", "dog"]
    prompts, how = derive_prompts(texts, labels, ["cat", "dog", "bird"])
    assert prompts == {"cat": "a photo of a cat", "dog": "a photo of a dog", "bird": "a photo of a bird"}
    assert "a photo of a {}" in how


def test_most_common_text_when_labels_are_codes() -> None:
    texts = ["a hand draws a gun", "drawing a pistol", "a hand draws a gun", "pointing a finger"]
    labels = ["1", "1", "1", "2"]
    prompts, how = derive_prompts(texts, labels, ["1", "2"])
    assert prompts == {"1": "a hand draws a gun", "2": "pointing a finger"} and "most common" in how


def test_given_template_and_map(tmp_path: Path) -> None:
    p = load_prompts("a photo of {}")
    assert prompts_for(["cat"], p, [], [])[0] == ["a photo of cat"]
    (tmp_path / "m.json").write_text('{"1": "drawing a gun", "2": "pointing"}')
    texts, how = prompts_for(["1", "2"], load_prompts(None, tmp_path / "m.json"), [], [])
    assert texts == ["drawing a gun", "pointing"] and how == "prompt map"
    (tmp_path / "m.csv").write_text("label,text\n1,drawing a gun\n")
    with pytest.raises(ValueError, match=r"no text for label\(s\) \['2'\]"):
        prompts_for(["1", "2"], load_prompts(None, tmp_path / "m.csv"), [], [])
    # A template fills the labels the map leaves out.
    assert prompts_for(["1", "2"], Prompts("a {} signal", {"1": "drawing a gun"}), [], [])[0] == [
        "drawing a gun", "a 2 signal"]


def test_bad_prompt_inputs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="put {} where the label goes"):
        load_prompts("a photo")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json: expected a JSON object"):
        load_prompts(None, tmp_path / "bad.json")
    (tmp_path / "bad.csv").write_text("name,value\na,b\n")
    with pytest.raises(ValueError, match="header 'label,text'"):
        load_prompts(None, tmp_path / "bad.csv")


def test_eval_uses_given_prompts(tiny_run: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from crossalign.cli import app

    r = CliRunner().invoke(app, ["eval", str(tiny_run), "--split", "val", "--prompt", "a picture of a {}",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "prompts.json").read_text())
    assert info["how"] == "template 'a picture of a {}'"
    assert all(p.startswith("a picture of a ") for p in info["prompts"].values())
    r = CliRunner().invoke(app, ["eval", str(tiny_run), "--split", "val", "--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    derived = json.loads((tmp_path / "d" / "prompts.json").read_text())
    assert derived["how"] != "template 'a {}'" and "zero-shot prompts" in r.output
