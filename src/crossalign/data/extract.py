"""Feature extraction: manifest column -> cached features, in batches, skipping bad rows.

A bad row (missing file, corrupt image, empty text, wrong shape, an input over the size limits)
is recorded as a Problem and skipped; it never costs the rows already encoded, which sit in the
cache shard by shard. Encoded features are written as a shard every `flush_every` items (512) or
every `flush_seconds` (5 s, `$CROSSALIGN_FLUSH_SECONDS`), whichever comes first, and once more on
the way out (exception, Ctrl-C): a SIGKILL or an out-of-memory kill, which no `finally` survives,
loses at most the last 5 seconds of encoding plus the batch in flight.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from crossalign.data.cache import FeatureCache, content_hash
from crossalign.data.check import Problem
from crossalign.data.manifest import Manifest, column_modality
from crossalign.encoders import Encoder, EncoderSpec
from crossalign.modalities import ReadError, get_reader

__all__ = ["ColumnFeatures", "encode_column", "infer_sensor_shape"]

log = logging.getLogger(__name__)


@dataclass
class ColumnFeatures:
    column: str
    spec: EncoderSpec  # what the cache stores (encoder outputs, or inputs for from-scratch towers)
    rows: np.ndarray  # (N_ok,) indices into manifest.rows
    features: np.ndarray  # (N_ok, *spec.output_shape) float32
    problems: list[Problem]
    encoded: int = 0  # how many items this call had to encode (the rest came from the cache)


def infer_sensor_shape(manifest: Manifest, column: str, modality: str = "sensor", probe: int = 50) -> tuple[int, ...]:
    """The usual array shape of a column's first rows (for encoders that need `input_shape`)."""
    reader = get_reader(modality)
    shapes: Counter[tuple[int, ...]] = Counter()
    for r in manifest.rows[:probe]:
        try:
            shapes[tuple(reader.read(r.get(column), manifest.base_dir).shape)] += 1
        except ReadError:
            continue
    if not shapes:
        raise ValueError(f"column '{column}': none of the first {probe} rows holds a readable array")
    return shapes.most_common(1)[0][0]


def _compute(encoder: Encoder, raws: list[Any]) -> torch.Tensor:
    if encoder.spec.caches_inputs:
        return encoder.preprocess(raws)
    return encoder.encode(raws)


Item = tuple[str, int, Any, "str | None"]  # (content key, row index, decoded value, read error)


def _content_keys(manifest: Manifest, column: str, reader: Any, problems: list[Problem]) -> dict[int, str]:
    """row index -> content key of its value; an unreadable reference is a problem, not a key."""
    keys: dict[int, str] = {}
    for i, r in enumerate(manifest.rows):
        try:
            keys[i] = content_hash(reader.content_key(r.get(column), manifest.base_dir))
        except ReadError as e:
            problems.append(Problem(manifest.row_number(i), column, e.reason))
    return keys


def _read_ahead(manifest: Manifest, column: str, reader: Any, items: list[tuple[str, int]],
                batch_size: int) -> Iterator[list[Item]]:
    """Batches of decoded items; the next batch is read on a thread while the encoder works on this one."""

    def read_batch(chunk: list[tuple[str, int]]) -> list[Item]:
        out: list[Item] = []
        for k, i in chunk:
            try:
                out.append((k, i, reader.read(manifest.rows[i].get(column), manifest.base_dir), None))
            except ReadError as e:
                out.append((k, i, None, e.reason))
        return out

    chunks = [items[s:s + batch_size] for s in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=1) as ex:
        fut = ex.submit(read_batch, chunks[0]) if chunks else None
        for j in range(len(chunks)):
            assert fut is not None
            cur = fut.result()
            fut = ex.submit(read_batch, chunks[j + 1]) if j + 1 < len(chunks) else None
            yield cur


class _Pending:
    """Encoded features not yet in the cache, written as one shard when enough items or seconds pass."""

    def __init__(self, cache: FeatureCache, flush_every: int, flush_seconds: float):
        self.cache, self.flush_every, self.flush_seconds = cache, flush_every, flush_seconds
        self.keys: list[str] = []
        self.feats: list[np.ndarray] = []
        self.last = time.monotonic()

    def add(self, keys: list[str], feats: np.ndarray) -> None:
        self.keys += keys
        self.feats.append(feats)

    def maybe_flush(self) -> None:
        if self.keys and (len(self.keys) >= self.flush_every or time.monotonic() - self.last >= self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        if self.keys:
            self.cache.put(self.keys, np.concatenate(self.feats))
            self.keys, self.feats = [], []
            self.last = time.monotonic()


def _encode_batch(encoder: Encoder, good: list[tuple[str, int, Any]], pending: _Pending,
                  fail: Callable[[int, str], None]) -> None:
    """Encode one batch into `pending`; when an item breaks the batch, retry item by item to skip it."""
    try:
        pending.add([g[0] for g in good], _compute(encoder, [g[2] for g in good]).numpy())
    except Exception:
        for k, i, raw in good:
            try:
                pending.add([k], _compute(encoder, [raw]).numpy())
            except Exception as e:
                fail(i, f"encoder {encoder.spec.name} failed: {e}")


def encode_column(manifest: Manifest, column: str, encoder: Encoder, *, batch_size: int = 32,
                  flush_every: int = 512, progress: bool = False, cache_dir: Path | None = None,
                  modality: str | None = None, flush_seconds: float | None = None) -> ColumnFeatures:
    if flush_seconds is None:
        flush_seconds = float(os.environ.get("CROSSALIGN_FLUSH_SECONDS", "5"))
    modality = modality or column_modality(column) or encoder.spec.modality
    reader = get_reader(modality)
    spec = encoder.cache_spec
    cache = FeatureCache(spec, cache_dir)
    problems: list[Problem] = []
    keys = _content_keys(manifest, column, reader, problems)
    todo: dict[str, int] = {}  # content key -> first row holding it, for content not cached yet
    for i, k in keys.items():
        if k not in cache and k not in todo:
            todo[k] = i
    bar = None
    if progress and todo:
        from crossalign.progress import progress_bar

        bar = progress_bar(total=len(todo), desc=f"encode {column} [{encoder.spec.name}]", unit="item")
    failed: set[int] = set()

    def fail(i: int, reason: str) -> None:
        problems.append(Problem(manifest.row_number(i), column, reason))
        failed.add(i)

    pending = _Pending(cache, flush_every, flush_seconds)
    encoded = 0
    try:
        for batch in _read_ahead(manifest, column, reader, list(todo.items()), batch_size):
            good = [(k, i, raw) for k, i, raw, err in batch if err is None]
            for _, i, _, err in batch:
                if err is not None:
                    fail(i, err)
            if good:
                _encode_batch(encoder, good, pending, fail)
                encoded += len(good)
            pending.maybe_flush()
            if bar:
                bar.update(len(batch))
    finally:
        pending.flush()  # even when interrupted, so a Ctrl-C loses at most the batch in flight
        if bar:
            bar.close()
    ok, feats = _gather(manifest, column, keys, failed, cache, problems)
    problems.sort(key=lambda p: p.row)
    if problems:
        log.warning("column '%s': %d bad rows skipped", column, len(problems))
    return ColumnFeatures(column, spec, ok, feats, problems, encoded)


def _gather(manifest: Manifest, column: str, keys: dict[int, str], failed: set[int], cache: FeatureCache,
            problems: list[Problem]) -> tuple[np.ndarray, np.ndarray]:
    """(rows whose content is cached, their features); rows sharing a failed item's content fail too."""
    bad_keys = {keys[i] for i in failed}
    ok = np.array([i for i in sorted(keys) if keys[i] not in bad_keys and keys[i] in cache], dtype=np.int64)
    for i in sorted(keys):  # duplicates of a failed item fail too; report them
        if keys[i] in bad_keys and i not in failed:
            problems.append(Problem(manifest.row_number(i), column, "same content as a row that failed"))
    return ok, cache.get_many([keys[int(i)] for i in ok])
