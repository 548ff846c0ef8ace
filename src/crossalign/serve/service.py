"""What the HTTP routes call: the run's embedder, the (optional) index, batching, hot reload."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from starlette.concurrency import run_in_threadpool

from crossalign.align.embedder import Embedder
from crossalign.encoders import encoder_facts
from crossalign.index import Hit, Searcher, VectorIndex, check_compatible, run_identity
from crossalign.serve.batching import MicroBatcher

__all__ = ["ServeSettings", "Service"]

log = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    max_upload_bytes: int = 10 * 1024 * 1024  # largest request body (JSON or multipart)
    max_batch: int = 32  # most items per encoder call
    batch_wait_ms: float = 5.0  # how long a request waits for others to share an encoder call
    max_k: int = 1000  # largest k a client may ask for
    max_inputs: int = 256  # most inputs in one /v1/embeddings request
    max_text_chars: int = 20_000  # longest text input
    max_decodes: int = 2  # images/audio/arrays decoded at once (each may take up to the input limits)
    reload_interval_s: float = 2.0  # how often to look for a newer index generation (0: never)
    # More encoders to serve one item at a time, beside those whose facts say they are not batch
    # invariant (Whisper pads a batch to its longest clip): an answer never depends on other clients.
    unbatched_encoders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.max_upload_bytes < 1024 or self.max_batch < 1 or self.max_k < 1 or self.max_inputs < 1
                or self.max_decodes < 1):
            raise ValueError("max_upload_bytes >= 1024, max_batch/max_k/max_inputs/max_decodes >= 1")


class Service:
    def __init__(
        self, run: str | Path, index: str | Path | None = None, settings: ServeSettings | None = None,
        bridge: Any = None,
    ):
        self.settings = settings or ServeSettings()
        self.bridge = bridge  # a crossalign.bridge.Bridge: adds POST /v1/ask
        # Bounds the decodes in flight: each may hold an image at the pixel limit, and the thread
        # pool would otherwise run up to 40 of them at once.
        self._decode_slots = asyncio.Semaphore(self.settings.max_decodes)  # binds to the loop on first use
        self.run = Path(run)
        self.identity = run_identity(run)
        self.embedder = Embedder.from_run(run)
        self.model_id = f"crossalign-{self.identity.run_id}"
        self.index_path = Path(index) if index is not None else None
        self._index: VectorIndex | None = None
        self._index_stamp: tuple[int, int] | None = None
        self._last_check = 0.0
        self._reload_lock = threading.Lock()
        if self.index_path is not None:
            self._index = VectorIndex.open(self.index_path)
            check_compatible(self._index, run)  # refuse to start with an index from another run
            self._index_stamp = self._stamp()
        # The searcher owns the encoder-version check; it reads the index through self.index.
        self._searcher = Searcher(self._index, self.embedder, check=False)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossalign-encode")
        self.batcher = MicroBatcher(
            self._embed_sync, self.executor, self.settings.max_batch, self.settings.batch_wait_ms / 1000
        )

    # ---- inputs ----------------------------------------------------------------------------------
    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a decoding function (`read_item` or a list of them) on a worker thread, at most
        `max_decodes` at a time; the others wait without holding a thread."""
        async with self._decode_slots:
            return await run_in_threadpool(fn, *args)

    # ---- embeddings ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Build every encoder now, so the first request does not pay for loading models."""
        for col in self.embedder.model.columns:
            self._searcher.check_encoder(col)

    def _embed_sync(self, column: str, raws: list[Any]) -> np.ndarray:
        return self._searcher.embed_raw(column, raws)

    async def embed(self, items: Sequence[tuple[str, Any]]) -> np.ndarray:
        """(column, raw item) pairs -> (N, dim) in the same order, batched per column."""
        order: dict[str, list[int]] = {}
        for i, (col, _) in enumerate(items):
            order.setdefault(col, []).append(i)
        parts = await asyncio.gather(
            *(self._embed_column(col, [items[i][1] for i in idx]) for col, idx in order.items())
        )
        out = np.zeros((len(items), self.embedder.model.out_dim), np.float32)
        for (col, idx), z in zip(order.items(), parts):
            out[idx] = z
        return out

    async def _embed_column(self, col: str, raws: list[Any]) -> np.ndarray:
        name = self.embedder.model.specs[col].name
        if encoder_facts(name).batch_invariant and name not in self.settings.unbatched_encoders:
            return await self.batcher.embed(col, raws)
        loop = asyncio.get_running_loop()
        rows = [await loop.run_in_executor(self.executor, self._embed_sync, col, [r]) for r in raws]
        return np.concatenate(rows)

    # ---- index -----------------------------------------------------------------------------------
    def _stamp(self) -> tuple[int, int]:
        st = os.stat(self.index_path / "index.json")  # type: ignore[operator]
        return st.st_mtime_ns, st.st_size

    def index(self) -> VectorIndex | None:
        """The index, reloaded when another process (`crossalign index add/delete`) committed a newer
        generation; a reload that fails verification or belongs to another run keeps the old one."""
        if self._index is None or not self.settings.reload_interval_s:
            return self._index
        now = time.monotonic()
        if now - self._last_check < self.settings.reload_interval_s:
            return self._index
        with self._reload_lock:
            self._last_check = now
            stamp = self._index_stamp
            try:
                stamp = self._stamp()
                if stamp != self._index_stamp:
                    fresh = VectorIndex.open(self.index_path)  # type: ignore[arg-type]
                    check_compatible(fresh, self.run)
                    self._index, self._index_stamp = fresh, stamp
                    self._searcher.index = fresh
                    log.info("reloaded index generation %d (%d items)", fresh.generation, len(fresh))
            except Exception as e:  # noqa: BLE001 - whatever a damaged generation raises, keep serving
                log.warning("kept index generation %d: reload failed: %s", self._index.generation, e)
                self._index_stamp = stamp  # do not retry the same broken generation every request
        return self._index

    def search(
        self, query: np.ndarray, k: int, target: str | None, filters: dict[str, Any] | None
    ) -> list[Hit]:
        ix = self.index()
        assert ix is not None
        return ix.search(query, k, target, filters)[0]

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
