"""Generic numeric signals: .npy / .npz / .csv arrays (radar maps, time series, tabular vectors).

Array headers are checked before any data is read: the declared size against
`limits().max_sensor_values` (an .npz is a zip file and can inflate a small upload to gigabytes),
the dtype against real numbers (complex, object and structured arrays are refused, never cast).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npformat

from crossalign.modalities.base import Modality, ReadError, file_bytes
from crossalign.modalities.client import array_value
from crossalign.modalities.limits import LimitError, limits

__all__ = ["SensorReader", "load_npy", "SENSOR"]


def _check_values(n: int, shown: Any) -> None:
    cap = limits().max_sensor_values
    if n > cap:
        raise LimitError(shown, f"array of {n:,} values exceeds the limit of {cap:,} "
                                "(CROSSALIGN_MAX_SENSOR_VALUES)")


def _check_dtype(dtype: np.dtype, shown: Any) -> None:
    if dtype.kind == "c":
        raise ReadError(shown, f"complex array ({dtype}) refused: send real values (e.g. magnitude)")
    if dtype.kind not in "biuf":
        raise ReadError(shown, f"array of dtype {dtype} refused: send numbers")


def load_npy(fp: Any, shown: Any) -> np.ndarray:
    """Read one .npy stream after checking its header (size, dtype); never unpickles."""
    try:
        version = npformat.read_magic(fp)
        read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        shape, fortran, dtype = read_header(fp)
    except Exception as e:
        raise ReadError(shown, f"not a .npy array: {e}") from e
    _check_dtype(dtype, shown)
    _check_values(int(np.prod(shape, dtype=np.int64)) if shape else 1, shown)
    try:
        data = fp.read(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize)
        arr = np.frombuffer(data, dtype=dtype)
        order = "F" if fortran else "C"
        return np.array(arr.reshape(shape, order=order))  # a writable copy of the buffer's view
    except Exception as e:
        raise ReadError(shown, f"corrupt .npy array: {e}") from e


def _npz(data: bytes, shown: Any) -> np.ndarray:
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = [i for i in z.infolist() if i.filename.endswith(".npy")]
    except Exception as e:
        raise ReadError(shown, f"corrupt .npz file: {e}") from e
    if len(names) != 1:
        raise ReadError(shown, f".npz must hold exactly one array, found {[i.filename for i in names]}")
    info = names[0]
    # The declared uncompressed size bounds what inflating can cost; a lie makes the read fail.
    if info.file_size > limits().max_sensor_values * 8 + 4096:
        raise LimitError(shown, f".npz member of {info.file_size / 2**20:.0f} MB uncompressed exceeds "
                                "the sensor limit (CROSSALIGN_MAX_SENSOR_VALUES)")
    with z.open(info) as f:
        return load_npy(f, shown)


def _load(data: bytes, suffix: str, shown: Any) -> np.ndarray:
    if suffix == ".npy":
        return load_npy(io.BytesIO(data), shown)
    if suffix == ".npz":
        return _npz(data, shown)
    if suffix in (".csv", ".txt"):
        # A value takes at least 2 bytes of text ("0,"): the file size bounds the array already.
        _check_values(len(data) // 2, shown)
        try:
            text = data.decode("utf-8-sig")
            return np.loadtxt(io.StringIO(text), delimiter="," if suffix == ".csv" else None, ndmin=1)
        except Exception as e:
            raise ReadError(shown, f"corrupt array file: {e}") from e
    raise ReadError(shown, f"unsupported sensor file type '{suffix}' (use .npy, .npz, .csv or .txt)")


def to_float32(arr: Any, shown: Any) -> np.ndarray:
    """Any array-like of real numbers -> float32, refusing complex/object values, NaN and empties."""
    if isinstance(arr, np.ndarray):
        _check_dtype(arr.dtype, shown)
        _check_values(arr.size, shown)
    try:
        out = np.asarray(arr, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ReadError(shown, f"not a numeric array: {e}") from e
    if out.size == 0:
        raise ReadError(shown, "empty array")
    _check_values(out.size, shown)
    if not np.isfinite(out).all():
        raise ReadError(shown, "array contains NaN or infinite values")
    return out


class SensorReader:
    name = "sensor"

    def read(self, value: Any, base_dir: Path | None = None) -> np.ndarray:
        if isinstance(value, (np.ndarray, list, tuple)):
            if not isinstance(value, np.ndarray):
                try:  # infer the dtype first, so complex or text values are refused, not cast
                    value = np.asarray(value)
                except (TypeError, ValueError) as e:
                    raise ReadError("<array>", f"not a numeric array: {e}") from e
            return to_float32(value, "<array>")
        data = file_bytes(value, base_dir)
        arr = _load(data, Path(str(value)).suffix.lower(), value)
        return to_float32(arr, value)

    def content_key(self, value: Any, base_dir: Path | None = None) -> bytes:
        if isinstance(value, (np.ndarray, list, tuple)):
            a = np.ascontiguousarray(to_float32(value, "<array>"))
            return a.tobytes() + str(a.shape).encode()
        return file_bytes(value, base_dir)


SENSOR = Modality("sensor", SensorReader, client=array_value("sensor"),
                  mime_types=("application/x-npy", "application/octet-stream", "application/npy"),
                  suffixes=("npy",), json_type=list[Any] | str, same_shape=True,
                  help="array file: .npy/.npz/.csv (nested list or base64 .npy over HTTP)")
