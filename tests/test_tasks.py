"""Built-in task data, user task validation, metrics, and one end-to-end task run (slow)."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import pytest

from crossalign.data.manifest import Manifest, load_manifest, write_manifest
from crossalign.datasets.scenes.scene import caption_en, sample_scene
from crossalign.datasets.scenes.tasks import MASK_TOKEN, MASKED_VALUES, make_task_rows, scene_words
from crossalign.fuse.config import TaskConfig, load_task_config
from crossalign.fuse.metrics import classification_metrics, entity_metrics, entity_spans, task_metrics
from crossalign.fuse.tasks import validate_user_rows

ATTR_WORDS = set(MASKED_VALUES) | {"top", "bottom", "left", "right"}


def _scenes_manifest(n: int = 200) -> Manifest:
    rows = []
    for i in range(n):
        objs = sample_scene(random.Random(f"t:{i}"))
        rows.append({"id": f"s{i}", "text": caption_en(objs), "split": "train",
                     "objects": [asdict(o) | {"cell": list(o.cell)} for o in objs]})
    return Manifest(rows, Path("mem.jsonl"), Path("."))


def test_scene_words_follow_caption() -> None:
    for i in range(100):
        objs = sample_scene(random.Random(i))
        words, slots = scene_words(objs)
        assert " ".join(words) == caption_en(objs)
        for k, attr, w in slots:
            o = objs[k]
            if attr in ("size", "color", "shape"):
                assert words[w] == getattr(o, attr)
            else:
                assert words[w].rstrip(",") in o.position.split()


def test_report_consistency_rows() -> None:
    m = _scenes_manifest()
    rows = make_task_rows(m, "report-consistency", seed=1)
    assert rows == make_task_rows(m, "report-consistency", seed=1)  # deterministic
    assert rows != make_task_rows(m, "report-consistency", seed=2)
    counts = {0: 0, 1: 0, 2: 0}
    for src, r in zip(m.rows, rows):
        words, orig = r["text"].split(), src["text"].split()
        assert r["caption"] == src["text"] and len(words) == len(orig) == len(r["tags"])
        changed = [i for i, (a, b) in enumerate(zip(words, orig)) if a != b]
        assert changed == [i for i, t in enumerate(r["tags"]) if t == "contradicted"]
        counts[len(changed)] += 1
        assert r["label"] == f"{len(changed)} contradicted"
        for w, o, t in zip(words, orig, r["tags"]):
            assert (t == "O") == (o.rstrip(",") not in ATTR_WORDS or o in ("a", "and", "the"))
            if t == "contradicted":  # a changed word is a valid word of the same kind, so text alone cannot tell
                assert w.rstrip(",") in ATTR_WORDS
    assert all(c > 30 for c in counts.values()), counts


def test_contradicted_position_never_matches_another_object() -> None:
    """A flipped position word must name a free cell (else the changed phrase could describe
    another object of the scene and would not contradict the image)."""
    from crossalign.datasets.scenes.scene import SceneObject

    m = _scenes_manifest(300)
    flips = 0
    for src, r in zip(m.rows, make_task_rows(m, "report-consistency", seed=0)):
        objs = [SceneObject(o["shape"], o["color"], o["size"], tuple(o["cell"])) for o in src["objects"]]
        _, slots = scene_words(objs)
        cells = {o.cell for o in objs}
        for k, attr, w in slots:
            if attr in ("row", "col") and r["tags"][w] == "contradicted":
                rr, cc = objs[k].cell
                new = (2 - rr, cc) if attr == "row" else (rr, 2 - cc)
                assert new not in cells
                flips += 1
    assert flips > 10


def test_masked_attribute_rows() -> None:
    m = _scenes_manifest()
    rows = make_task_rows(m, "masked-attribute", seed=0)
    assert rows == make_task_rows(m, "masked-attribute", seed=0)
    labels = set()
    for src, r in zip(m.rows, rows):
        words, orig = r["text"].split(), src["text"].split()
        i = words.index(MASK_TOKEN)
        assert words.count(MASK_TOKEN) == 1 and orig[i] == r["label"] and r["label"] in MASKED_VALUES
        assert words[:i] + words[i + 1:] == orig[:i] + orig[i + 1:]
        labels.add(r["label"])
    assert len(labels) == len(MASKED_VALUES)


def test_builtin_tasks_need_objects() -> None:
    m = Manifest([{"id": "x", "text": "hello"}], Path("m.jsonl"), Path("."))
    with pytest.raises(ValueError, match="row 1: field 'objects' missing"):
        make_task_rows(m, "report-consistency")
    with pytest.raises(ValueError, match="unknown built-in task 'nope'"):
        make_task_rows(m, "nope")


def test_user_rows_validation(tmp_path: Path) -> None:
    path = write_manifest([{"text": "a red dog", "tags": ["O", "B-COL", "O"]},
                           {"text": "two words", "tags": ["O"]}], tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match=r"m.jsonl: row 2: field 'tags' has 1 tags but 'text' has 2"):
        validate_user_rows(load_manifest(path), "tag")
    path = write_manifest([{"text": "x", "label": "a"}, {"text": "y", "label": ""}], tmp_path / "c.jsonl")
    with pytest.raises(ValueError, match="row 2: field 'label' is empty"):
        validate_user_rows(load_manifest(path), "classify")


def test_task_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fusion must be one of"):
        TaskConfig(fusion="sum")
    with pytest.raises(ValueError, match="label_fraction"):
        TaskConfig(label_fraction=0)
    f = tmp_path / "t.yaml"
    f.write_text("data: d.jsonl\nfusion: gated\nbogus: 1\n")
    with pytest.raises(ValueError, match="bogus"):
        load_task_config(f)
    f.write_text("data: d.jsonl\nfusion: gated\n")
    cfg = load_task_config(f, epochs=3, init=None)
    assert (cfg.task, cfg.fusion, cfg.train.epochs, cfg.data) == ("custom", "gated", 3, "d.jsonl")


def test_entity_spans() -> None:
    assert entity_spans(["O", "B-X", "I-X", "O", "B-Y", "B-Y", "I-X"]) == {(1, 3, "X"), (4, 5, "Y"), (5, 6, "Y"),
                                                                         (6, 7, "X")}
    assert entity_spans(["O", "consistent", "contradicted", "O"]) == {(1, 2, "consistent"), (2, 3, "contradicted")}


def test_entity_metrics_values() -> None:
    true = [["O", "B-X", "I-X", "B-Y"], ["B-X", "O"]]
    pred = [["O", "B-X", "O", "B-Y"], ["B-X", "O"]]  # first X span cut short: wrong; others right
    m = entity_metrics(true, pred)
    assert m["entity/X/recall"] == pytest.approx(0.5) and m["entity/X/precision"] == pytest.approx(0.5)
    assert m["entity/Y/f1"] == pytest.approx(1.0)
    assert m["entity/micro_precision"] == pytest.approx(2 / 3) and m["entity/micro_recall"] == pytest.approx(2 / 3)
    assert m["entity/macro_f1"] == pytest.approx((0.5 + 1.0) / 2)


def test_classification_metrics_match_sklearn() -> None:
    from sklearn.metrics import f1_score

    yt, yp = [0, 1, 2, 2, 1, 0, 2], [0, 2, 2, 2, 1, 1, 0]
    m, text = classification_metrics(yt, yp, ["a", "b", "c"])
    assert m["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro"))
    assert m["micro_f1"] == pytest.approx(f1_score(yt, yp, average="micro"))
    assert m["b/recall"] == pytest.approx(0.5) and "macro avg" in text


def test_task_metrics_tagging_ignores_padding() -> None:
    import numpy as np

    tg = np.array([[0, 2, 1, -100], [1, 0, -100, -100]])
    pr = np.array([[0, 2, 2, 2], [1, 0, 1, 1]])
    wm = tg >= 0
    m, text = task_metrics("tag", ["O", "consistent", "contradicted"], tg, pr, wm)
    assert m["accuracy"] == pytest.approx(4 / 5)
    assert m["entity/contradicted/precision"] == pytest.approx(0.5) and "entity level" in text


# ---- end to end on generated scenes (real encoders, the shared trainer, CLI) ----

@pytest.mark.slow
def test_end_to_end_report_consistency(scenes_small: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crossalign.cli import app
    from crossalign.fuse.run import evaluate_run, load_task_run, predict
    from crossalign.recipes.task import train_task

    cfg = TaskConfig(task="report-consistency", data=str(scenes_small), out=str(tmp_path / "rc"),
                     train={"epochs": 2, "batch_size": 32, "progress": False}, d=32, heads=2, layers=1,
                     token_views={"text": {"column": "text", "encoder": "text:minilm", "options": {"words": 28}},
                                  "image": {"column": "image", "options": {"size": 128, "grid": 2, "color": True}}})
    run, result, ev = train_task(cfg)
    assert result.epochs_run == 2 and (run / "model.safetensors").exists() and (run / "task.json").exists()
    assert set(ev["without"]) == {"text", "image"} and 0 <= ev["metrics"]["macro_f1"] <= 1
    assert "contradicted" in ev["report"] and "entity level" in ev["report"]
    r = load_task_run(run)
    ev2 = evaluate_run(r, split=ev["split"])
    assert ev2["metrics"]["macro_f1"] == pytest.approx(ev["metrics"]["macro_f1"])  # saved == trained model
    row = json.loads((run / "task_manifest.jsonl").read_text().splitlines()[0])
    p = predict(r, {"text": [row["text"]], "image": [row["image"]]})[0]
    assert p.words == row["text"].split() and len(p.tags) == len(p.words)
    p_img_missing = predict(r, {"text": [row["text"]]})[0]
    assert len(p_img_missing.tags) == len(p.words)
    out = CliRunner().invoke(app, ["task", "predict", "--run", str(run), "--text", row["text"],
                                   "--image", row["image"], "--json"])
    assert out.exit_code == 0, out.output
    line = out.output[out.output.rindex('{"label"'):].splitlines()[0]  # model-loading progress aside
    assert json.loads(line)["words"] == p.words


@pytest.mark.slow
def test_end_to_end_custom_classification(scenes_small: Path, tmp_path: Path) -> None:
    """A user task from a manifest `label` column, through a YAML config and the CLI."""
    from typer.testing import CliRunner

    from crossalign.cli import app

    m = load_manifest(scenes_small)
    rows = [{"id": r["id"], "text": r["text"], "image": str(m.base_dir / r["image"]), "sensor": str(m.base_dir / r["sensor"]),
             "label": r["objects"][0]["size"], "split": r["split"]} for r in m.rows]
    write_manifest(rows, tmp_path / "mine.jsonl")
    (tmp_path / "task.yaml").write_text(
        f"data: {tmp_path / 'mine.jsonl'}\nmodalities: [image, sensor]\nfusion: gated\nd: 32\nheads: 2\n"
        "epochs: 2\nbatch_size: 32\nprogress: false\n"
        "token_views:\n  image: {column: image, options: {size: 128, grid: 2, color: true}}\n")
    out = CliRunner().invoke(app, ["task", "train", "--task", str(tmp_path / "task.yaml"), "--out", str(tmp_path / "run")])
    assert out.exit_code == 0, out.output
    assert "macro avg" in out.output and "without sensor" in out.output
    out = CliRunner().invoke(app, ["task", "eval", "--run", str(tmp_path / "run"), "--split", "val"])
    assert out.exit_code == 0, out.output
    bad = CliRunner().invoke(app, ["task", "train", "--task", "nope", "--data", "x"])
    assert bad.exit_code != 0 and "neither a built-in task" in bad.output


def test_scenes_tasks_use_the_fusion_outside_tag() -> None:
    """datasets/ is earlier than fuse/ and keeps its own copy of the outside tag: they must agree."""
    from crossalign.datasets.scenes.tasks import CONSISTENCY_TAGS, TAG_OUTSIDE, TASKS
    from crossalign.fuse.tasks import TAG_OUTSIDE as FUSE_OUTSIDE

    assert TAG_OUTSIDE == FUSE_OUTSIDE == CONSISTENCY_TAGS[0] == TASKS["report-consistency"].classes[0]


def test_tagging_without_the_text_view_is_refused_before_encoding(scenes_small: Path, tmp_path: Path) -> None:
    """`--task report-consistency --modalities image` used to end in a raw KeyError: 'text'."""
    from typer.testing import CliRunner

    from crossalign.cli import app

    out = CliRunner().invoke(app, ["task", "train", "--task", "report-consistency", "--data", str(scenes_small),
                                   "--modalities", "image", "--epochs", "1", "--out", str(tmp_path / "run")])
    flat = " ".join(out.output.replace("│", " ").split())
    assert out.exit_code != 0 and "must include it" in flat and "--modalities text,image" in flat, out.output
    assert not isinstance(out.exception, KeyError)
