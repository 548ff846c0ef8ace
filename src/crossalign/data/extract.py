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
from typing import Any, Iterator

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
    if encoder.spec.from_scratch:
        return encoder.preprocess(raws)
    return encoder.encode(raws)


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
    keys: dict[int, str] = {}
    for i, r in enumerate(manifest.rows):
        try:
            keys[i] = content_hash(reader.content_key(r.get(column), manifest.base_dir))
        except ReadError as e:
            problems.append(Problem(manifest.row_number(i), column, e.reason))
    todo: dict[str, int] = {}
    for i, k in keys.items():
        if k not in cache and k not in todo:
            todo[k] = i
    bar = None
    if progress and todo:
        from crossalign.progress import progress_bar

        bar = progress_bar(total=len(todo), desc=f"encode {column} [{encoder.spec.name}]", unit="item")
    failed: set[int] = set()
    items = list(todo.items())

    def read_batch(chunk: list[tuple[str, int]]) -> list[tuple[str, int, Any, str | None]]:
        out = []
        for k, i in chunk:
            try:
                out.append((k, i, reader.read(manifest.rows[i].get(column), manifest.base_dir), None))
            except ReadError as e:
                out.append((k, i, None, e.reason))
        return out

    def batches() -> Iterator[list[tuple[str, int, Any, str | None]]]:
        # Read and decode the next batch on a thread while the encoder works on this one.
        chunks = [items[s:s + batch_size] for s in range(0, len(items), batch_size)]
        with ThreadPoolExecutor(max_workers=1) as ex:
            fut = ex.submit(read_batch, chunks[0]) if chunks else None
            for j in range(len(chunks)):
                assert fut is not None
                cur = fut.result()
                fut = ex.submit(read_batch, chunks[j + 1]) if j + 1 < len(chunks) else None
                yield cur

    pend_keys: list[str] = []
    pend_feats: list[np.ndarray] = []
    encoded = 0
    last_flush = time.monotonic()
    try:
        for batch in batches():
            good = [(k, i, raw) for k, i, raw, err in batch if err is None]
            for k, i, raw, err in batch:
                if err is not None:
                    problems.append(Problem(manifest.row_number(i), column, err))
                    failed.add(i)
            if good:
                try:
                    feats = _compute(encoder, [g[2] for g in good]).numpy()
                    pend_keys += [g[0] for g in good]
                    pend_feats.append(feats)
                except Exception:
                    # One item broke the batch: retry item by item to find and skip it.
                    for k, i, raw in good:
                        try:
                            pend_feats.append(_compute(encoder, [raw]).numpy())
                            pend_keys.append(k)
                        except Exception as e:
                            problems.append(Problem(manifest.row_number(i), column,
                                                    f"encoder {encoder.spec.name} failed: {e}"))
                            failed.add(i)
                encoded += len(good)
            if pend_keys and (len(pend_keys) >= flush_every
                              or time.monotonic() - last_flush >= flush_seconds):
                cache.put(pend_keys, np.concatenate(pend_feats))
                pend_keys, pend_feats = [], []
                last_flush = time.monotonic()
            if bar:
                bar.update(len(batch))
    finally:
        # Flush even when interrupted, so a Ctrl-C loses at most the batch in flight.
        if pend_keys:
            cache.put(pend_keys, np.concatenate(pend_feats))
        if bar:
            bar.close()
    bad_keys = {keys[i] for i in failed}
    ok = np.array([i for i in sorted(keys) if keys[i] not in bad_keys and keys[i] in cache], dtype=np.int64)
    for i in sorted(keys):  # duplicates of a failed item fail too; report them
        if keys[i] in bad_keys and i not in failed:
            problems.append(Problem(manifest.row_number(i), column, "same content as a row that failed"))
    feats = cache.get_many([keys[int(i)] for i in ok])
    problems.sort(key=lambda p: p.row)
    if problems:
        log.warning("column '%s': %d bad rows skipped", column, len(problems))
    return ColumnFeatures(column, spec, ok, feats, problems, encoded)
