from pathlib import Path

import json


def test_tiny_run_folder(tiny_run: Path) -> None:
    for f in ("config.json", "encoders.json", "model.safetensors", "best.safetensors", "last.safetensors",
              "metrics.jsonl", "train_result.json"):
        assert (tiny_run / f).exists(), f
    lines = (tiny_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    rec = json.loads(lines[-1])
    assert "val/image->text/R@1" in rec and "val/mean/R@1" in rec
