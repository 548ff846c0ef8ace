"""The CLI's one error path: a one-line message naming file and row, exit 2 for usage errors and 1
for data errors, the traceback only with --debug. Issue #12, Low."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossalign.cli import app
from crossalign.cli.errors import run


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = run(app, [str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


def _files(tmp: Path) -> dict[str, Path]:
    (tmp / "latin1.csv").write_bytes(b"id,text\n1,fine\n2,caf\xe9\n")
    (tmp / "badline.jsonl").write_text('{"text": "a"}\n{"text": "b",\n')
    (tmp / "list.jsonl").write_text('{"text": "a"}\n["text"]\n')
    (tmp / "m.txt").write_text("text\na\n")
    (tmp / "empty.jsonl").write_text("")
    return {p.stem: p for p in tmp.iterdir()}


@pytest.mark.parametrize("args,code,needles", [
    (("data", "check", "{latin1}"), 1, ["latin1.csv", "line 3 (row 2)", "not UTF-8"]),
    (("data", "check", "{badline}"), 1, ["badline.jsonl: row 2: invalid JSON"]),
    (("data", "check", "{list}"), 1, ["list.jsonl: row 2: expected a JSON object"]),
    (("data", "check", "{m}"), 1, ["m.txt: unsupported manifest format '.txt'"]),
    (("data", "check", "{tmp}/missing.jsonl"), 1, ["manifest not found", "missing.jsonl"]),
    (("train", "--data", "{empty}", "--modalities", "text", "--out", "{tmp}/run"), 1,
     ["empty.jsonl: the manifest has no rows"]),
    (("train", "--data", "{latin1}", "--modalities", "text", "--out", "{tmp}/run"), 1, ["row 2"]),
    (("encode", "--data", "{list}", "--encoder", "text"), 1, ["list.jsonl: row 2"]),
    (("bridge", "train", "{tmp}/no-run", "--data", "{list}"), 1, ["no-run", "not a crossalign run"]),
    (("data", "check", "{latin1}", "--no-such-option"), 2, ["No such option"]),
    (("train",), 2, ["give a CONFIG file"]),
])
def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                             code: int, needles: list[str]) -> None:
    f = _files(tmp_path)
    argv = [a.format(tmp=tmp_path, **f) for a in args]
    got, out = _cli(capsys, *argv)
    assert got == code, out
    assert "Traceback" not in out
    for n in needles:
        assert n in out, out
    if code == 1:
        lines = [ln for ln in out.splitlines() if ln.startswith("crossalign: error:")]
        assert len(lines) == 1, out


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    f = _files(tmp_path)
    cmd = [sys.executable, "-m", "crossalign", "data", "check", str(f["badline"])]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith(f"crossalign: error: {f['badline']}: row 2: invalid JSON")
    assert len(p.stderr.strip().splitlines()) == 1
    p = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "Traceback" in p.stderr and "ManifestError" in p.stderr


@pytest.mark.slow
def test_sigkill_during_encode_keeps_what_was_flushed(tmp_path: Path) -> None:
    """`crossalign encode` killed with SIGKILL: the shards written before the kill are complete and
    re-used; only the last seconds are encoded again."""
    import json

    n = 4000  # enough that a quiet machine is still encoding when the kill comes (~2 ms a caption)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"text": f"caption number {i} of a shape"}) + "\n"
                                              for i in range(n)))
    cache = tmp_path / "cache"
    env = dict(os.environ, CROSSALIGN_FLUSH_SECONDS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "crossalign", "encode", "--data", str(tmp_path / "m.jsonl"),
           "--encoder", "text", "--batch-size", "8", "--cache-dir", str(cache)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("*/shard-*.keys")):  # the first flush (after ~1 s of encoding)
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait(30)
    keys = [k for f in cache.glob("*/shard-*.keys") for k in f.read_text().split()]
    assert 8 <= len(keys) < n  # flushed by time: well before the first 512 items
    # The re-run may batch and thread as it likes: the cache is keyed by content and encoder, not batch.
    rerun = [*cmd[:cmd.index("--batch-size") + 1], "64", *cmd[cmd.index("--batch-size") + 2:]]
    env.pop("OMP_NUM_THREADS")
    r = subprocess.run(rerun, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{n - len(set(keys))} newly encoded" in r.stdout, r.stdout
