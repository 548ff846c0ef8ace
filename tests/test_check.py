"""`data check`: every bad value reported once, with its 1-based row and its column, in every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image
from typer.testing import CliRunner

from crossalign.data.check import Problem, check_manifest
from crossalign.data.manifest import load_manifest

COLUMNS = ["id", "image", "text", "audio", "sensor"]


def _make_files(d: Path) -> None:
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(d / f"ok{k}.png")
        sf.write(d / f"ok{k}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
        np.save(d / f"ok{k}.npy", rng.standard_normal((4, 5)).astype(np.float32))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    (d / "cut.png").write_bytes(buf.getvalue()[:100])
    (d / "noise.wav").write_bytes(rng.bytes(2000))
    np.save(d / "wide.npy", np.zeros((5, 4), np.float32))


# Row n (1-based) -> what is wrong with it. Row 1 and 4 are clean.
ROWS = [
    {"id": "a", "image": "ok0.png", "text": "a red circle", "audio": "ok0.wav", "sensor": "ok0.npy"},
    {"id": "b", "image": "missing.png", "text": "a blue square", "audio": "ok1.wav", "sensor": "ok1.npy"},
    {"id": "c", "image": "cut.png", "text": "   ", "audio": "noise.wav", "sensor": "ok2.npy"},
    {"id": "d", "image": "ok1.png", "text": "a star", "audio": "ok2.wav", "sensor": "ok0.npy"},
    {"id": "b", "image": "ok2.png", "text": "a small star", "audio": "ok0.wav", "sensor": "wide.npy"},
]
EXPECTED = {(2, "image"): "not found", (3, "image"): "corrupt", (3, "text"): "empty text",
            (3, "audio"): "corrupt", (5, "id"): "duplicate id 'b' (first at row 2)",
            (5, "sensor"): "wrong array shape (5, 4)"}


def _write(d: Path, fmt: str, rows: list[dict]) -> Path:
    if fmt == "jsonl":
        p = d / "manifest.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        p = d / "manifest.csv"
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            w.writerows(rows)
    else:
        p = d / "manifest.parquet"
        pq.write_table(pa.Table.from_pylist(rows), p)
    return p


def _assert_expected(problems: list[Problem]) -> None:
    got = {(p.row, p.column): p.message for p in problems}
    assert set(got) == set(EXPECTED), sorted(got)
    for where, fragment in EXPECTED.items():
        assert fragment in got[where], (where, got[where])
    assert problems == sorted(problems, key=lambda p: (p.row, p.column))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_problem_with_row_and_column(tmp_path: Path, fmt: str) -> None:
    _make_files(tmp_path)
    m = load_manifest(_write(tmp_path, fmt, ROWS))
    assert m.modality_columns == {"image": "image", "text": "text", "audio": "audio", "sensor": "sensor"}
    _assert_expected(check_manifest(m))


def test_empty_csv_and_parquet_cells_count_as_missing(tmp_path: Path) -> None:
    _make_files(tmp_path)
    rows = [dict(ROWS[0]), dict(ROWS[0], id="z", text=None)]
    for fmt in ("csv", "parquet"):
        probs = check_manifest(load_manifest(_write(tmp_path, fmt, rows)))
        assert [(p.row, p.column) for p in probs] == [(2, "text")], fmt


def test_jsonl_rows_are_line_numbers(tmp_path: Path) -> None:
    _make_files(tmp_path)
    lines = [json.dumps(ROWS[0]), "", json.dumps(dict(ROWS[0], id="x", image="gone.png"))]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    probs = check_manifest(load_manifest(tmp_path / "m.jsonl"))
    assert [(p.row, p.column) for p in probs] == [(3, "image")]  # blank line 2 still counts


def test_only_selected_columns_and_missing_keys(tmp_path: Path) -> None:
    _make_files(tmp_path)
    m = load_manifest(_write(tmp_path, "jsonl", ROWS + [{"id": "e", "image": "ok0.png", "text": "x"}]))
    probs = check_manifest(m, columns={"text": "text"})
    assert [(p.row, p.column) for p in probs] == [(3, "text"), (5, "id")]
    missing = [p for p in check_manifest(m) if p.row == 6]
    assert {(p.column, p.message) for p in missing} == {("audio", "missing value"), ("sensor", "missing value")}


def test_invalid_jsonl_names_the_row(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match="row 2"):
        load_manifest(tmp_path / "m.jsonl")


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    from crossalign.cli import app

    _make_files(tmp_path)
    runner = CliRunner()
    bad = runner.invoke(app, ["data", "check", str(_write(tmp_path, "jsonl", ROWS))])
    assert bad.exit_code == 1
    assert "row 3, column 'image'" in bad.output and "6 problems in 3 rows" in bad.output
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    _make_files(good_dir)
    ok = runner.invoke(app, ["data", "check", str(_write(good_dir, "csv", [ROWS[0], ROWS[3]]))])
    assert ok.exit_code == 0 and "no problems found" in ok.output
