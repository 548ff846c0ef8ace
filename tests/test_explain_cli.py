"""`crossalign explain`, `crossalign search --explain` and `POST /v1/explain` over a real HTTP server."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from serving import serving
from typer.testing import CliRunner

from crossalign.cli import app

runner = CliRunner()


def _test_row(data: Path) -> dict[str, Any]:
    rows = [json.loads(x) for x in (data / "manifest.jsonl").read_text().splitlines() if x.strip()]
    return next(r for r in rows if r.get("split") == "test")


def test_explain_cli_json_png_and_terminal(tiny_run: Path, scenes_small: Path, tmp_path: Path) -> None:
    row = _test_row(scenes_small)
    png = tmp_path / "why.png"
    res = runner.invoke(
        app,
        [
            "explain",
            str(tiny_run),
            "--id",
            row["id"],
            "--data",
            str(scenes_small),
            "--json",
            "--png",
            str(png),
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["row"] == row["id"] and out["views"] == ["text", "image"]
    text, image = out["sides"]
    assert [u["label"] for u in text["units"]] == row["text"].split()
    assert text["method"] == "ig" and text["completeness_gap"] is not None
    assert image["method"] == "occlusion" and image["unit"] == "cell" and len(image["units"]) == 4  # grid 2
    assert png.stat().st_size > 10_000
    res = runner.invoke(
        app, ["explain", str(tiny_run), "--text", row["text"], "--audio", str(scenes_small / row["audio"])]
    )
    assert res.exit_code == 0, res.output
    assert "similarity" in res.stdout and "occlusion" in res.stdout and "window" in res.stdout


def test_explain_cli_errors(tiny_run: Path, scenes_small: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["explain", str(tiny_run), "--text", "a red circle", "--image", str(tmp_path / "no.png")]
    )
    assert res.exit_code == 2 and "no.png" in res.output
    res = runner.invoke(app, ["explain", str(tiny_run), "--id", "nope", "--data", str(scenes_small)])
    assert res.exit_code == 2 and "no row with id 'nope'" in res.output
    res = runner.invoke(
        app,
        [
            "explain",
            str(tiny_run),
            "--text",
            "a",
            "--audio",
            str(scenes_small / _test_row(scenes_small)["audio"]),
            "--method",
            "ig",
        ],
    )
    assert res.exit_code == 2 and "occlusion" in res.output  # ig refused on the CTranslate2 tower
    res = runner.invoke(app, ["explain", str(tiny_run), "--text", "a red circle"])
    assert res.exit_code != 0 and "two of" in res.output


def test_search_explains_the_top_hit(tiny_run: Path, scenes_small: Path, tmp_path: Path) -> None:
    from crossalign.index import build_index

    idx = tmp_path / "index"
    build_index(tiny_run, scenes_small, idx, ["image"], split="test")
    row = _test_row(scenes_small)
    res = runner.invoke(app, ["search", str(idx), "--text", row["text"], "-k", "3", "--json", "--explain"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    ex = out["explanation"]
    assert ex["score"] == pytest.approx(out["results"][0]["score"], abs=1e-4)
    assert [s["modality"] for s in ex["sides"]] == ["text", "image"]




@pytest.fixture(scope="module")
def server(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("explain-serve") / "server.log"
    with serving([str(tiny_run)], log) as (url, _proc):
        yield url
    assert "Traceback" not in log.read_text()


def test_http_explain(server: str, tiny_run: Path, scenes_small: Path) -> None:
    from crossalign.align.embedder import Embedder
    from crossalign.explain import explain_pair

    row = _test_row(scenes_small)
    img = (scenes_small / row["image"]).read_bytes()
    body = {"text": row["text"], "image": "data:image/png;base64," + base64.b64encode(img).decode()}
    r = httpx.post(server + "/v1/explain", json=body, timeout=300)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "explanation" and out["views"] == ["text", "image"]
    emb = Embedder.from_run(tiny_run)
    ref = explain_pair(
        emb, ("text", row["text"]), ("image", emb.read("image", [row["image"]], scenes_small)[0])
    )
    assert out["score"] == pytest.approx(ref.score, abs=1e-4)
    assert [u["label"] for u in out["sides"][0]["units"]] == row["text"].split()
    assert out["sides"][1]["method"] == "occlusion"


@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"text": "a red circle"}, 400, "exactly two"),
        (
            {"text": "a", "image": "/etc/passwd"},
            400,
            "image",
        ),  # a path is never read: it is not base64 of an image
        ({"text": "a", "sensor": [[1.0, 2.0]], "method": "ig"}, 400, "sensor"),
        ({"text": "a", "image": "aGk=", "grid": 99}, 400, "grid"),
        ({"text": "a", "image": "aGk=", "method": "shap"}, 400, "method"),
    ],
)
def test_http_explain_bad_input(server: str, body: dict[str, Any], status: int, needle: str) -> None:
    r = httpx.post(server + "/v1/explain", json=body, timeout=120)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_http_explain_not_json(server: str) -> None:
    r = httpx.post(server + "/v1/explain", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
