"""The micro-batcher (serve/batching.py) on its own: grouping, size limit, per-column queues, and one
request's bad item never failing its neighbours. The encoder function is a real numpy function."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from crossalign.serve.batching import MicroBatcher


class Encoder:
    """Embeds strings as (len, ord of first char) and records every call's (column, items)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []

    def __call__(self, column: str, items: list[Any]) -> np.ndarray:
        self.calls.append((column, list(items)))
        if any(x == "bad" for x in items):
            raise ValueError("cannot embed 'bad'")
        return np.array([[len(x), ord(x[0])] for x in items], dtype=np.float32)  # (N, 2)


def _run(enc: Encoder, requests: list[tuple[str, list[str]]], **kw: Any) -> tuple[list[Any], MicroBatcher]:
    async def go() -> tuple[list[Any], MicroBatcher]:
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(enc, ex, **kw)
            try:
                out = await asyncio.gather(*(b.embed(c, r) for c, r in requests), return_exceptions=True)
            finally:
                await b.close()
            return list(out), b

    return asyncio.run(go())


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    enc = Encoder()
    reqs = [("text", ["a", "bb"]), ("text", ["ccc"]), ("text", ["dddd", "e", "ff"])]
    out, b = _run(enc, reqs, max_batch=32, max_wait_s=0.2)
    assert len(enc.calls) == 1 and b.batches == 1 and b.items == 6
    for (col, items), z in zip(reqs, out):
        assert np.array_equal(z, Encoder()(col, items))  # the same rows as embedding it alone


def test_batch_size_limit_and_separate_columns() -> None:
    enc = Encoder()
    reqs = [("text", ["a", "b"]) for _ in range(5)] + [("image", ["x"])]
    out, b = _run(enc, reqs, max_batch=4, max_wait_s=0.2)
    text_calls = [items for col, items in enc.calls if col == "text"]
    assert [len(c) for c in text_calls] == [4, 4, 2]  # requests are never split, batches stop at 4
    assert [items for col, items in enc.calls if col == "image"] == [["x"]]
    assert b.batches == 4 and b.items == 11
    assert all(z.shape == (len(r), 2) for (_, r), z in zip(reqs, out))


def test_a_bad_item_fails_only_its_own_request() -> None:
    enc = Encoder()
    out, b = _run(enc, [("text", ["a"]), ("text", ["bad"]), ("text", ["cc"])], max_wait_s=0.2)
    assert isinstance(out[1], ValueError) and "bad" in str(out[1])
    assert np.array_equal(out[0], [[1, ord("a")]]) and np.array_equal(out[2], [[2, ord("c")]])
    assert len(enc.calls) == 4  # the shared call, then one by one
    assert b.batches == 2 and b.items == 2


def test_limits_are_clamped() -> None:
    with ThreadPoolExecutor(1) as ex:
        b = MicroBatcher(Encoder(), ex, max_batch=0, max_wait_s=-1)
    assert b.max_batch == 1 and b.max_wait_s == 0.0
    out, _ = _run(Encoder(), [("text", ["bad"])])
    with pytest.raises(ValueError, match="cannot embed"):
        raise out[0]  # a lone request's error reaches its caller unchanged
