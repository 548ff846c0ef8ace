"""The HTTP service, started for real (`python -m crossalign serve`) on a free loopback port and
queried with httpx and the official `openai` client: every endpoint, the bad inputs, concurrency."""

from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from serving import serving

from crossalign.index import VectorIndex, build_index

MAX_UPLOAD_MB = 1




@pytest.fixture(scope="module")
def served(
    tiny_run: Path, scenes_small: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    idx = tmp_path_factory.mktemp("serve") / "index"
    build_index(tiny_run, scenes_small, idx, ["image", "audio", "sensor", "text"])
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    args = [str(tiny_run), "--index", str(idx), "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-k", "50"]
    with serving(args, log) as (url, _proc), httpx.Client(base_url=url, timeout=60) as client:
        yield {"url": url, "client": client, "index": idx, "run": tiny_run, "data": scenes_small, "log": log}


def _rows(served: dict[str, Any]) -> list[dict[str, Any]]:
    from crossalign.data.manifest import load_manifest

    m = load_manifest(served["data"])
    return [dict(r, _base=m.base_dir) for r in m.rows]


def _file(served: dict[str, Any], row: dict[str, Any], col: str) -> bytes:
    return (row["_base"] / row[col]).read_bytes()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def test_health_models_docs(served: dict[str, Any]) -> None:
    c = served["client"]
    h = c.get("/health").json()
    assert h["status"] == "ok" and h["views"] == {
        "image": "image",
        "text": "text",
        "audio": "audio",
        "sensor": "sensor",
    }
    assert h["index"]["by_modality"] == {"image": 80, "audio": 80, "sensor": 80, "text": 80}
    assert c.get("/v1/models").json()["data"][0]["id"] == h["model"]
    assert "swagger" in c.get("/docs").text.lower()
    spec = c.get("/openapi.json").json()
    body = spec["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert "/v1/embeddings" in spec["paths"]


def test_openai_client_embeddings_match_the_library(served: dict[str, Any]) -> None:
    from openai import BadRequestError, OpenAI

    from crossalign.align.embedder import Embedder

    texts = ["two small red circles", "a large blue square at the top"]
    ref = Embedder.from_run(served["run"]).embed("text", texts)
    client = OpenAI(base_url=served["url"] + "/v1", api_key="unused", max_retries=0)
    for fmt in (None, "float"):  # the client asks for base64 by default and decodes it itself
        kw = {"encoding_format": fmt} if fmt else {}
        r = client.embeddings.create(input=texts, model="crossalign", **kw)
        got = np.array([d.embedding for d in r.data], dtype=np.float32)
        np.testing.assert_allclose(got, ref, atol=1e-5)
        assert [d.index for d in r.data] == [0, 1] and r.usage.total_tokens > 0
    one = client.embeddings.create(input="two small red circles", model="anything")
    np.testing.assert_allclose(one.data[0].embedding, ref[0], atol=1e-5)
    with pytest.raises(BadRequestError, match="empty"):
        client.embeddings.create(input="  ", model="crossalign")
    with pytest.raises(BadRequestError, match="dimensions"):
        client.embeddings.create(input="x", model="crossalign", dimensions=7)


def test_embeddings_extension_other_modalities(served: dict[str, Any]) -> None:
    c, row = served["client"], _rows(served)[5]
    img, wav = _file(served, row, "image"), _file(served, row, "audio")
    radar = np.load(row["_base"] / row["sensor"]).tolist()
    body = {
        "input": [
            f"data:image/png;base64,{_b64(img)}",
            {"type": "audio", "data": _b64(wav)},
            {"sensor": radar},
            row["text"],
        ]
    }
    r = c.post("/v1/embeddings", json=body)
    assert r.status_code == 200, r.text
    z = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    assert z.shape == (4, c.get("/health").json()["dim"])
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-4)
    # The same bytes as plain base64 with "modality" give the same vector.
    r2 = c.post("/v1/embeddings", json={"input": [_b64(img)], "modality": "image"}).json()
    np.testing.assert_allclose(r2["data"][0]["embedding"], z[0], atol=1e-5)
    # Each embedding finds its own row in the index (image, sensor: exact; audio: same clip alone).
    ix = VectorIndex.open(served["index"])
    for vec, mod in zip(z, ("image", "audio", "sensor", "text")):
        top = ix.search(vec, k=1, modality=mod)[0][0]
        assert top.id == row["id"], mod


def test_search_json_and_multipart(served: dict[str, Any]) -> None:
    c, rows = served["client"], _rows(served)
    row = rows[7]
    r = c.post("/v1/search", json={"text": "two small red circles", "k": 5, "modality": "image"})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == 5 and all(h["modality"] == "image" for h in res)
    assert [h["rank"] for h in res] == [1, 2, 3, 4, 5]
    assert [h["score"] for h in res] == sorted((h["score"] for h in res), reverse=True)
    img = _file(served, row, "image")
    by_b64 = c.post("/v1/search", json={"image": _b64(img), "k": 3, "modality": "image"}).json()["results"]
    by_upload = c.post(
        "/v1/search", files={"image": ("q.png", img, "image/png")}, data={"k": "3", "modality": "image"}
    ).json()["results"]
    assert by_b64[0]["id"] == by_upload[0]["id"] == row["id"] and by_b64[0]["score"] > 0.99
    assert [h["id"] for h in by_b64] == [h["id"] for h in by_upload]
    wav = _file(served, row, "audio")
    r = c.post(
        "/v1/search", files={"audio": ("q.wav", wav, "audio/wav")}, data={"k": "3", "modality": "audio"}
    )
    assert r.status_code == 200 and r.json()["results"][0]["id"] == row["id"]
    npy = io.BytesIO()
    np.save(npy, np.load(row["_base"] / row["sensor"]))
    r = c.post(
        "/v1/search", files={"sensor": ("q.npy", npy.getvalue())}, data={"k": "2", "modality": "sensor"}
    )
    assert r.status_code == 200 and r.json()["results"][0]["id"] == row["id"]
    # Metadata filters, in JSON and as a multipart JSON field.
    label = row["label"]
    r = c.post(
        "/v1/search", json={"text": "a shape", "k": 50, "modality": "image", "filters": {"label": label}}
    )
    res = r.json()["results"]
    assert res and all(h["label"] == label for h in res)
    assert len(res) == sum(1 for x in rows if x["label"] == label)
    r = c.post(
        "/v1/search", data={"text": "a shape", "k": "3", "filters": json.dumps({"split": ["val", "test"]})}
    )
    assert r.status_code == 200 and all(h["split"] in ("val", "test") for h in r.json()["results"])


def _corrupt_png(served: dict[str, Any]) -> bytes:
    good = _file(served, _rows(served)[0], "image")
    return good[:60] + b"\0" * 40 + good[100:150]  # valid signature, broken chunks


BAD: list[tuple[str, dict[str, Any], int, str]] = [
    ("search", {"json": {"text": ""}}, 400, "empty"),
    ("search", {"json": {}}, 400, "exactly one query"),
    ("search", {"json": {"text": "a", "image": "aGk="}}, 400, "exactly one query"),
    ("search", {"json": {"text": "a", "k": 0}}, 400, "k must be"),
    ("search", {"json": {"text": "a", "k": 51}}, 400, "k must be"),
    ("search", {"json": {"text": "a", "k": "many"}}, 400, "k"),
    ("search", {"json": {"text": "a", "modality": "smell"}}, 400, "unknown modality"),
    ("search", {"json": {"text": "a", "view": "smell"}}, 400, "no 'smell' view"),
    ("search", {"json": {"text": "a", "colour": "red"}}, 400, "colour"),
    ("search", {"json": {"image": "not base64 at all!"}}, 400, "base64"),
    ("search", {"json": {"image": _b64(b"GIF89a but not really an image")}}, 400, "unreadable image"),
    ("search", {"json": {"image": "data:audio/wav;base64,aGk="}}, 400, "expected image"),
    ("search", {"json": {"audio": _b64(b"RIFF....WAVEfmt nonsense")}}, 400, "unreadable audio"),
    ("search", {"json": {"sensor": [[1.0, 2.0], [3.0, 4.0]]}}, 400, "shape"),
    ("search", {"json": {"sensor": [["a", "b"]]}}, 400, "sensor"),
    ("search", {"files": {"image": ("x.png", b"", "image/png")}}, 400, "empty"),
    ("search", {"files": {"video": ("x.mp4", b"123", "video/mp4")}}, 400, "unexpected file field"),
    ("search", {"content": b"{nope", "headers": {"content-type": "application/json"}}, 400, "JSON"),
    ("search", {"content": b"text=hi", "headers": {"content-type": "text/plain"}}, 415, "content type"),
    (
        "search",
        {
            "content": b"x" * (MAX_UPLOAD_MB * 1024 * 1024 + 10),
            "headers": {"content-type": "application/json"},
        },
        413,
        "limit",
    ),
    ("embed", {"json": {"input": []}}, 400, "empty"),
    ("embed", {"json": {"input": ["ok", ""]}}, 400, "input[1]"),
    ("embed", {"json": {}}, 400, "input"),
    ("embed", {"json": {"input": [[101, 2023]]}}, 400, "token"),
    ("embed", {"json": {"input": ["data:video/mp4;base64,aGk="]}}, 400, "unsupported data URL"),
    ("embed", {"json": {"input": [{"type": "smell", "data": "x"}]}}, 400, "smell"),
    ("embed", {"json": {"input": ["aGk="], "modality": "image"}}, 400, "unreadable image"),
    ("embed", {"json": {"input": "x", "encoding_format": "hex"}}, 400, "encoding_format"),
    ("embed", {"json": {"input": ["a"] * 257}}, 400, "at most"),
]


@pytest.mark.parametrize(
    "endpoint,kwargs,status,needle", BAD, ids=[f"{e}-{n}-{i}" for i, (e, _, _, n) in enumerate(BAD)]
)
def test_bad_inputs_get_clear_4xx(
    served: dict[str, Any], endpoint: str, kwargs: dict[str, Any], status: int, needle: str
) -> None:
    path = "/v1/search" if endpoint == "search" else "/v1/embeddings"
    r = served["client"].post(path, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle.lower() in err["message"].lower(), err
    assert err["type"] == "invalid_request_error"


def test_corrupt_and_oversize_uploads(served: dict[str, Any]) -> None:
    c = served["client"]
    r = c.post("/v1/search", files={"image": ("x.png", _corrupt_png(served), "image/png")})
    assert r.status_code == 400 and "image" in r.json()["error"]["message"]
    big = np.random.default_rng(0).integers(0, 255, MAX_UPLOAD_MB * 1024 * 1024 + 1, dtype=np.uint8).tobytes()
    r = c.post("/v1/search", files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "1 MB" in r.json()["error"]["message"]
    # A chunked body (no Content-Length) past the limit is cut off too.
    r = c.post("/v1/search", content=iter([b"x" * 65536] * 20), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert c.get("/health").status_code == 200  # and the server is fine afterwards


def test_server_never_reads_paths_a_client_names(served: dict[str, Any]) -> None:
    c, row = served["client"], _rows(served)[0]
    path = str((row["_base"] / row["image"]).resolve())  # a real, readable image on the server
    for body in ({"image": path}, {"image": "file://" + path}):
        r = c.post("/v1/search", json=body)
        assert r.status_code == 400, r.text
    r = c.post("/v1/embeddings", json={"input": [path], "modality": "image"})
    assert r.status_code == 400
    r = c.post("/v1/embeddings", json={"input": [{"type": "image", "data": path}]})
    assert r.status_code == 400
    apath = str((row["_base"] / row["sensor"]).resolve())
    assert c.post("/v1/search", json={"sensor": apath}).status_code == 400


def test_concurrent_clients_are_batched_and_correct(served: dict[str, Any]) -> None:
    c = served["client"]
    queries = [
        f"a {size} {color} {shape}"
        for size in ("small", "large")
        for color in ("red", "blue")
        for shape in ("circle", "square", "star", "triangle")
    ]  # 16 distinct texts
    seq = {
        q: [
            h["id"]
            for h in c.post("/v1/search", json={"text": q, "k": 5, "modality": "image"}).json()["results"]
        ]
        for q in queries
    }
    calls0 = c.get("/health").json()["batching"]["encoder_calls"]

    def client(i: int) -> list[tuple[str, list[str], int]]:
        out = []
        with httpx.Client(base_url=served["url"], timeout=60) as cl:
            for j in range(4):
                q = queries[(i + j) % len(queries)]
                r = cl.post("/v1/search", json={"text": q, "k": 5, "modality": "image"})
                out.append((q, [h["id"] for h in r.json().get("results", [])], r.status_code))
        return out

    with ThreadPoolExecutor(16) as pool:
        results = [x for part in pool.map(client, range(16)) for x in part]
    assert len(results) == 64 and all(status == 200 for _, _, status in results)
    assert all(ids == seq[q] for q, ids, _ in results)  # batching never changes an answer
    calls = c.get("/health").json()["batching"]["encoder_calls"] - calls0
    assert calls < 64, f"{calls} encoder calls for 64 concurrent requests: nothing was batched"


def test_index_changes_are_picked_up_without_restart(served: dict[str, Any]) -> None:
    c = served["client"]
    gen0 = c.get("/health").json()["index"]["generation"]
    with VectorIndex.open(served["index"], writable=True) as ix:
        vec = ix.search(np.eye(ix.dim, dtype=np.float32)[0], k=1, modality="image")  # any direction
        assert vec
        n, _ = ix.delete([vec[0][0].id], modality="image")
        assert n == 1
        ix.commit()
    deadline = time.monotonic() + 20
    while c.get("/health").json()["index"]["generation"] == gen0:
        assert time.monotonic() < deadline, "the server never reloaded the index"
        time.sleep(0.3)
    assert c.get("/health").json()["index"]["by_modality"]["image"] == 79


def test_no_server_errors_logged(served: dict[str, Any]) -> None:
    log = served["log"].read_text()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]
