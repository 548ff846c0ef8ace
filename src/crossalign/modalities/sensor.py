"""Generic numeric signals: .npy / .npz / .csv arrays (radar maps, time series, tabular vectors)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from crossalign.modalities.base import ReadError, file_bytes, resolve_path

__all__ = ["SensorReader"]


class SensorReader:
    name = "sensor"

    def read(self, value: Any, base_dir: Path | None = None) -> np.ndarray:
        if isinstance(value, np.ndarray):
            arr = value
        elif isinstance(value, (list, tuple)):
            arr = np.asarray(value)
        else:
            p = resolve_path(value, base_dir)
            try:  # read the resolved path: file_bytes() would resolve (stat) it a second time
                data = p.read_bytes()
            except OSError as e:
                raise ReadError(value, f"unreadable file: {e}") from e
            arr = _load(data, p.suffix.lower(), value)
        try:
            arr = np.asarray(arr, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise ReadError(value, f"not a numeric array: {e}") from e
        if arr.size == 0:
            raise ReadError(value, "empty array")
        if not np.isfinite(arr).all():
            raise ReadError(value, "array contains NaN or infinite values")
        return arr

    def content_key(self, value: Any, base_dir: Path | None = None) -> bytes:
        if isinstance(value, (np.ndarray, list, tuple)):
            a = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
            return a.tobytes() + str(a.shape).encode()
        return file_bytes(value, base_dir)


def _load(data: bytes, suffix: str, shown: Any) -> np.ndarray:
    try:
        if suffix == ".npy":
            return np.load(io.BytesIO(data), allow_pickle=False)
        if suffix == ".npz":
            z = np.load(io.BytesIO(data), allow_pickle=False)
            if len(z.files) != 1:
                raise ValueError(f".npz must hold exactly one array, found {z.files}")
            return z[z.files[0]]
        if suffix in (".csv", ".txt"):
            return np.loadtxt(io.StringIO(data.decode("utf-8")), delimiter="," if suffix == ".csv" else None)
    except Exception as e:
        raise ReadError(shown, f"corrupt array file: {e}") from e
    raise ReadError(shown, f"unsupported sensor file type '{suffix}' (use .npy, .npz, .csv or .txt)")
