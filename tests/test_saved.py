"""The saved-folder contract: every folder names its kind in `crossalign.json`, folders from before
it still load, writes are atomic (a failure leaves no partial file or folder), one weights order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from crossalign.saved import (CONTRACT_FILE, FolderError, atomic_folder, atomic_write_json, read_contract,
                              save_weights, weights_file, write_contract)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_trained_run_names_its_kind_and_parts(tiny_run: Path) -> None:
    doc = json.loads((tiny_run / CONTRACT_FILE).read_text())
    assert doc["kind"] == "alignment-run" and doc["format"] == 1
    assert {"config.json", "encoders.json"} <= {p["path"] for p in doc["parts"]}
    assert doc["weights"] == ["model", "best", "last"]
    assert read_contract(tiny_run, ("alignment-run",), 1)["kind"] == "alignment-run"


def test_run_from_before_the_contract_loads_the_same(tiny_run: Path, tmp_path: Path) -> None:
    from crossalign.align.io import load_run

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    (old / CONTRACT_FILE).unlink()
    cfg = json.loads((old / "config.json").read_text())
    cfg.pop("format")  # the oldest runs wrote no format either
    (old / "config.json").write_text(json.dumps(cfg))
    assert read_contract(old, ("alignment-run",)) == {"kind": "alignment-run", "format": 0, "parts": [], "legacy": True}
    a, cfg_a = load_run(old)
    b, cfg_b = load_run(tiny_run)
    assert cfg_a == cfg_b
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), k


def test_unknown_key_in_a_saved_config_names_key_and_file(tiny_run: Path, tmp_path: Path) -> None:
    from crossalign.align.io import load_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["objectiv"] = "infonce"
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json.*model: unknown key 'objectiv'"):
        load_run(run)


def test_contract_refuses_other_kinds_newer_formats_and_damage(tmp_path: Path) -> None:
    write_contract(tmp_path, "bridge", 1, ["bridge.json"])
    with pytest.raises(FolderError, match=f"{CONTRACT_FILE}: kind 'bridge', expected 'alignment-run'"):
        read_contract(tmp_path, ("alignment-run",))
    with pytest.raises(FolderError, match="refusing to write 'index' into it"):
        write_contract(tmp_path, "index", 1)
    write_contract(tmp_path, "bridge", 2)
    with pytest.raises(FolderError, match="format 2 is newer than this crossalign reads \\(1\\)"):
        read_contract(tmp_path, ("bridge",), 1)
    (tmp_path / CONTRACT_FILE).write_text("{not json")
    with pytest.raises(FolderError, match=f"{CONTRACT_FILE}: not valid JSON"):
        read_contract(tmp_path, ("bridge",))
    with pytest.raises(FileNotFoundError, match="not a crossalign run \\(no such folder\\)"):
        read_contract(tmp_path / "nowhere", ("alignment-run",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a crossalign task run \\(no crossalign.json or task.json\\)"):
        read_contract(tmp_path / "empty", ("task-run",))


def test_parts_accumulate(tmp_path: Path) -> None:
    write_contract(tmp_path, "alignment-run", 1, ["config.json"])
    doc = write_contract(tmp_path, "alignment-run", 1, ["config.json", "semi.json"])
    assert [p["path"] for p in doc["parts"]] == ["config.json", "semi.json"]
    assert doc["parts"][1] == {"name": "semi", "path": "semi.json"}


def test_weights_order(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no best.safetensors"):
        weights_file(tmp_path, "best")
    for name in ("last", "best", "model"):
        save_weights(tmp_path / f"{name}.safetensors", {"w": torch.zeros(2)})
    assert weights_file(tmp_path, "best").name == "best.safetensors"
    assert weights_file(tmp_path, "ckpt-3").name == "model.safetensors"  # then model, best, last
    (tmp_path / "model.safetensors").unlink()
    assert weights_file(tmp_path, "ckpt-3").name == "best.safetensors"


def test_failed_writes_leave_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "a.json", {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "a.json", {1j: 2})  # a key JSON cannot hold
    assert json.loads((tmp_path / "a.json").read_text()) == {"v": 1}
    save_weights(tmp_path / "w.safetensors", {"w": torch.ones(3)})
    with pytest.raises(AttributeError):
        save_weights(tmp_path / "w.safetensors", {"w": "not a tensor"})  # type: ignore[dict-item]
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(tmp_path / "w.safetensors"))["w"], torch.ones(3))
    assert _leftovers(tmp_path) == []


def test_atomic_folder_leaves_nothing_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_folder(dest) as d:
            (d / "a.json").write_text("{}")
            raise RuntimeError("half way")
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    with atomic_folder(dest) as d:
        (d / "a.json").write_text("{}")
    assert [p.name for p in dest.iterdir()] == ["a.json"] and _leftovers(tmp_path) == []
    with pytest.raises(FileExistsError):
        with atomic_folder(dest):
            pass
    with pytest.raises(RuntimeError):
        with atomic_folder(dest, replace=True) as d:
            (d / "b.json").write_text("{}")
            raise RuntimeError("no")
    assert [p.name for p in dest.iterdir()] == ["a.json"]  # the old folder, untouched


def test_failed_import_leaves_no_partial_run(tiny_run: Path, tmp_path: Path) -> None:
    """An export whose run id does not match: the import fails and `out` never appears."""
    from crossalign.align.io import load_run
    from crossalign.export import export_run, import_export

    export_run(tiny_run, "card", tmp_path / "exp")
    doc = json.loads((tmp_path / "exp" / CONTRACT_FILE).read_text())
    assert doc["kind"] == "export" and doc["formats"] == ["card"]
    back = import_export(tmp_path / "exp", tmp_path / "back")
    assert read_contract(back, ("alignment-run",))["format"] == 1 and load_run(back)[1] == load_run(tiny_run)[1]
    meta = json.loads((tmp_path / "exp" / "export.json").read_text())
    (tmp_path / "exp" / "export.json").write_text(json.dumps(meta | {"run_id": "0" * 16}))
    with pytest.raises(ValueError, match="differs from export.json"):
        import_export(tmp_path / "exp", tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and _leftovers(tmp_path) == []
    with pytest.raises(FileExistsError, match="not empty"):
        import_export(tmp_path / "exp", back)
