"""Hostile manifests and interrupted work: BOMs, non-UTF-8 rows, odd headers, inputs over the
limits in the CLI readers, time-based flushing of encoded features, metrics.jsonl after a kill.
Issue #12, High (CLI limits), Medium (BOM) and Low (flush, metrics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from crossalign.cli import app
from crossalign.data.check import check_manifest
from crossalign.data.manifest import ManifestError, load_manifest
from hostile_payloads import png_bomb

runner = CliRunner()


def test_csv_and_jsonl_with_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes("\ufeffid,text\nx7,a red circle\n".encode("utf-8"))
    m = load_manifest(tmp_path / "m.csv")
    assert m.rows[0]["id"] == "x7" and m.modality_columns == {"text": "text"} and m.ids() == ["x7"]
    (tmp_path / "m.jsonl").write_bytes('\ufeff{"id": "j1", "text": "a"}\n'.encode("utf-8"))
    assert load_manifest(tmp_path / "m.jsonl").ids() == ["j1"]


def test_non_utf8_rows_are_named(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(b"id,text\n1,fine\n2,caf\xe9\n")
    with pytest.raises(ManifestError, match=r"line 3 \(row 2\).*not UTF-8|not UTF-8.*line 3 \(row 2\)"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "m.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl: row 2: not UTF-8"):
        load_manifest(tmp_path / "m.jsonl")


@pytest.mark.parametrize("content,needle", [
    ('{"text": "a"}\n{"text": \n', "row 2: invalid JSON"),
    ('{"text": "a"}\n[1, 2]\n', "row 2: expected a JSON object, got list"),
    ('{"text": ' + "[" * 50000 + "\n", "row 1: invalid JSON"),
])
def test_bad_jsonl_lines(tmp_path: Path, content: str, needle: str) -> None:
    (tmp_path / "m.jsonl").write_text(content)
    with pytest.raises(ManifestError, match=needle):
        load_manifest(tmp_path / "m.jsonl")


def test_data_check_reports_odd_headers_and_extra_values(tmp_path: Path) -> None:
    # A BOM inside a header (not at the file start), a zero-width space, a trailing space, a case slip.
    (tmp_path / "m.csv").write_text("id,te\u200bxt,Image,label ,text\n1,a,b,c,fine\n2,x,y,z,ok,extra\n")
    problems = [str(p) for p in check_manifest(load_manifest(tmp_path / "m.csv"))]
    assert any("te\\u200bxt" in p and "invisible" in p and "'text'" in p for p in problems), problems
    assert any("'Image'" in p and "did you mean 'image'" in p for p in problems), problems
    assert any("'label '" in p and "surrounding" in p for p in problems), problems
    assert "row 2, column '*': 1 more values than there are headers" in problems
    r = runner.invoke(app, ["data", "check", str(tmp_path / "m.csv")])
    assert r.exit_code == 1 and "header, column 'Image'" in r.output and "other columns" in r.output


def test_cli_readers_skip_rows_over_the_limits(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_bomb(12000, 12000))
    rows = [{"id": "a", "text": "fine", "image": "bomb.png"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    r = runner.invoke(app, ["data", "check", str(tmp_path / "m.jsonl")])
    assert r.exit_code == 1
    assert "row 1, column 'image': image of 12000x12000 pixels exceeds the limit" in r.output


def test_encode_flushes_by_time(tmp_path: Path) -> None:
    from crossalign.data.cache import FeatureCache
    from crossalign.data.extract import encode_column
    from crossalign.encoders import build_encoder

    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"text": f"item {i}"}) + "\n" for i in range(10)))
    m = load_manifest(tmp_path / "m.jsonl")
    enc = build_encoder("text:minilm")
    cf = encode_column(m, "text", enc, batch_size=4, flush_every=512, flush_seconds=0.0,
                       cache_dir=tmp_path / "cache")
    assert len(cf.rows) == 10
    shards = sorted((tmp_path / "cache" / enc.cache_spec.cache_key()).glob("shard-*.keys"))
    assert len(shards) == 3  # one per batch of 4, 4, 2: a kill loses at most the batch in flight
    assert len(FeatureCache(enc.cache_spec, tmp_path / "cache")) == 10


# ---- metrics.jsonl after a kill between the log line and the state commit ------------------------
class _Regression:
    """A real (tiny) task for the Trainer: fit y = x @ w."""

    primary, greater_is_better = "mse", False

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)

    def num_train(self) -> int:
        return 64

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.model.parameters())}]

    def training_forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        loss = ((self.model(self.x[idx])[:, 0] - self.y[idx]) ** 2).mean()
        return {"loss": loss}, {}

    def validate(self) -> dict[str, float]:
        with torch.no_grad():
            return {"mse": float(((self.model(self.x)[:, 0] - self.y) ** 2).mean())}

    def save(self, folder: Path, name: str) -> None:
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(folder / f"{name}.safetensors"))

    def load(self, folder: Path, name: str) -> None:
        self.model.load_state_dict(load_file(str(folder / f"{name}.safetensors")))


def test_metrics_have_no_duplicate_epoch_after_a_kill(tmp_path: Path) -> None:
    from crossalign.train.trainer import Trainer

    kw = dict(epochs=5, batch_size=16, lr=0.05, progress=False)
    Trainer(_Regression(), tmp_path, stop_after=3, **kw).fit()  # committed epochs 0, 1, 2
    log = tmp_path / "metrics.jsonl"
    # A SIGKILL after epoch 3's log line and before its state commit leaves exactly this on disk.
    with open(log, "a") as f:
        f.write(json.dumps({"epoch": 3, "lr": 0.0, "val/mse": 9.9}) + "\n")
    Trainer(_Regression(), tmp_path, **kw).fit()  # resumes at epoch 3
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs == [0, 1, 2, 3, 4]
    assert all(json.loads(line).get("val/mse") != 9.9 for line in log.read_text().splitlines())
    np.testing.assert_equal(len(epochs), 5)
