"""Micro-batching: concurrent requests for one encoder share a forward pass.

Encoders on CPU cost far less per item in a batch than one by one (one model call, one
matrix multiply per layer), so requests that arrive within `max_wait_s` of each other are
embedded together, up to `max_batch` items. All model calls run on one worker thread: torch and
CTranslate2 already use every core inside a call, and concurrent calls would only contend.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["MicroBatcher"]

log = logging.getLogger(__name__)


class MicroBatcher:
    def __init__(
        self,
        fn: Callable[[str, list[Any]], np.ndarray],
        executor: ThreadPoolExecutor,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
    ):
        self.fn, self.executor = fn, executor
        self.max_batch, self.max_wait_s = max(1, max_batch), max(0.0, max_wait_s)
        self._queues: dict[str, asyncio.Queue[tuple[list[Any], asyncio.Future[np.ndarray]]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self.batches = 0  # calls made, for /health and tests
        self.items = 0

    async def embed(self, column: str, raws: Sequence[Any]) -> np.ndarray:
        """Embed `raws` of one view column -> (len(raws), dim); batched with concurrent callers."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        if column not in self._queues:
            self._queues[column] = asyncio.Queue()
            self._workers[column] = asyncio.create_task(self._work(column))
        await self._queues[column].put((list(raws), fut))
        return await fut

    async def _work(self, column: str) -> None:
        q = self._queues[column]
        loop = asyncio.get_running_loop()
        while True:
            group = [await q.get()]
            n = len(group[0][0])
            deadline = loop.time() + self.max_wait_s
            while n < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(q.get(), timeout)
                except asyncio.TimeoutError:
                    break
                group.append(nxt)
                n += len(nxt[0])
            await self._run(column, group)

    async def _run(self, column: str, group: list[tuple[list[Any], asyncio.Future[np.ndarray]]]) -> None:
        loop = asyncio.get_running_loop()
        flat = [r for raws, _ in group for r in raws]
        try:
            z = await loop.run_in_executor(self.executor, self.fn, column, flat)
        except Exception as e:
            if len(group) > 1:  # one request's bad item must not fail the others: retry one by one
                for raws, fut in group:
                    await self._run(column, [(raws, fut)])
            elif not group[0][1].done():
                group[0][1].set_exception(e)
            return
        self.batches += 1
        self.items += len(flat)
        start = 0
        for raws, fut in group:
            if not fut.done():  # the client may have gone away
                fut.set_result(z[start : start + len(raws)])
            start += len(raws)

    async def close(self) -> None:
        for t in self._workers.values():
            t.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
