"""`crossalign index build|add|delete|info`, `crossalign search` and `serve`'s refusals, through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crossalign.cli import app

runner = CliRunner()


def _run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cli_index(tiny_run: Path, scenes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "idx"
    r = _run(
        "index",
        "build",
        tiny_run,
        "--data",
        scenes_small,
        "--modalities",
        "image,audio",
        "--out",
        out,
        "--split",
        "test",
    )
    assert r.exit_code == 0, r.output
    assert "indexed (flat)" in r.output and "image" in r.output and "audio" in r.output
    return out


@pytest.fixture(scope="module")
def test_rows(scenes_small: Path) -> list[dict[str, Any]]:
    from crossalign.data.manifest import load_manifest

    m = load_manifest(scenes_small).select("test")
    return [dict(r, image=str(m.base_dir / r["image"]), audio=str(m.base_dir / r["audio"])) for r in m.rows]


def test_text_and_audio_to_image_search(cli_index: Path, test_rows: list[dict[str, Any]]) -> None:
    r = _run(
        "search", cli_index, "--text", "two small red circles", "-k", "4", "--modality", "image", "--json"
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["query"] == {"modality": "text", "value": "two small red circles"}
    res = out["results"]
    assert len(res) == 4 and all(h["modality"] == "image" for h in res)
    assert [h["score"] for h in res] == sorted((h["score"] for h in res), reverse=True)
    row = test_rows[2]
    r = _run("search", cli_index, "--audio", row["audio"], "-k", "3", "--modality", "image")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 3 and lines[0].split()[0] == "1" and all("image" in ln for ln in lines)
    # Same-modality queries find the item itself first.
    r = _run("search", cli_index, "--image", row["image"], "-k", "1", "--json")
    top = json.loads(r.stdout)["results"][0]
    assert top["id"] == row["id"] and top["score"] > 0.99 and row["image"].endswith("/" + top["source"])
    r = _run(
        "search", cli_index, "--text", "a red star", "-k", "40", "--json", "--filter", f"label={row['label']}"
    )
    res = json.loads(r.stdout)["results"]
    assert res and all(h["label"] == row["label"] for h in res)
    assert len(res) == 2 * sum(1 for x in test_rows if x["label"] == row["label"])  # image + audio of each


def test_info_add_delete(cli_index: Path, scenes_small: Path, tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(cli_index, idx)
    info = json.loads(_run("index", "info", idx, "--json").stdout)
    n0 = info["items"]
    assert info["by_modality"]["image"] == info["by_modality"]["audio"] == n0 // 2 and info["kind"] == "flat"
    r = _run("index", "info", idx)
    assert r.exit_code == 0 and "audio:whisper-tiny" in r.stdout
    r = _run("index", "add", idx, "--data", scenes_small, "--modalities", "image", "--split", "val")
    assert r.exit_code == 0 and "added" in r.stdout, r.output
    n1 = json.loads(_run("index", "info", idx, "--json").stdout)["items"]
    assert n1 > n0
    r = _run("index", "add", idx, "--data", scenes_small, "--modalities", "image", "--split", "val")
    assert r.exit_code == 1 and "already in" in r.output
    r = _run(
        "index",
        "add",
        idx,
        "--data",
        scenes_small,
        "--modalities",
        "image",
        "--split",
        "val",
        "--on-duplicate",
        "skip",
    )
    assert r.exit_code == 0 and "added 0" in r.stdout
    some = json.loads(_run("search", idx, "--text", "x", "-k", "1", "--json").stdout)["results"][0]["id"]
    r = _run("index", "delete", idx, some)
    assert r.exit_code == 0 and "deleted" in r.stdout
    assert json.loads(_run("index", "info", idx, "--json").stdout)["items"] < n1
    r = _run("index", "delete", idx, "no-such-id")
    assert r.exit_code == 1 and "not found: no-such-id" in r.output


@pytest.mark.parametrize(
    "args,needle,code",
    [  # exit 2: the command line is wrong; exit 1: the data (files, index, values) is
        ((), "exactly one query", 2),
        (("--text", "a", "--image", "x.png"), "exactly one query", 2),
        (("--text", "a", "-k", "0"), "-k", 2),
        (("--image", "/no/such/file.png"), "file not found", 1),
        (("--text", "a", "--modality", "text"), "holds no 'text'", 1),
        (("--text", "a", "--view", "audio"), "not a text view", 1),
        (("--text", "a", "--filter", "nokeyvalue"), "KEY=VALUE", 2),
        (("--text", "a", "--filter", "colour=red"), "unknown filter key 'colour'", 1),
    ],
)
def test_search_errors(cli_index: Path, args: tuple[str, ...], needle: str, code: int) -> None:
    r = _run("search", cli_index, *args)
    assert r.exit_code == code and needle in r.output, r.output


def test_missing_or_damaged_index(tmp_path: Path, tiny_run: Path, scenes_small: Path) -> None:
    r = _run("search", tmp_path / "nothing", "--text", "a")
    assert r.exit_code == 1 and "no index here" in r.output
    r = _run(
        "index", "build", tiny_run, "--data", scenes_small, "--modalities", "smell", "--out", tmp_path / "i"
    )
    assert r.exit_code == 1 and "smell" in r.output
    r = _run("index", "build", tiny_run, "--data", scenes_small, "--out", tmp_path / "j", "--kind", "annoy")
    assert r.exit_code == 1 and "unknown index kind" in r.output


def test_incompatible_run_refused_by_search_and_serve(
    cli_index: Path, tiny_run: Path, tmp_path: Path
) -> None:
    import json as _json

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    cfg = _json.loads((other / "config.json").read_text())
    cfg["model"]["temperature"] = 0.05  # a different model config -> a different run identity
    (other / "config.json").write_text(_json.dumps(cfg))
    r = _run("search", cli_index, "--text", "a", "--run", other)
    assert r.exit_code == 3 and "model config differs" in r.output, r.output
    r = _run("serve", other, "--index", cli_index, "--port", "1")
    assert r.exit_code == 1 and "embeds differently" in r.output, r.output
