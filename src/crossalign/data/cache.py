"""Content-keyed feature cache, memory-mappable, under one root.

Layout: `<cache_root>/features/<encoder cache key>/` holds `spec.json` and shards
`shard-<n>.npy` (float32, or float16 when the spec's `storage` option says so; (n, *shape)) with `shard-<n>.keys` (one content hash per line).
A shard is written to a temporary name and renamed, and its keys file is renamed last: a run
killed mid-write leaves no shard that is visible but incomplete, and the next run re-encodes only
what no finished shard holds. The key folder encodes (encoder, version, preprocessing), so a
changed encoder version gets a new folder and leaves every other encoder's entries alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np

from crossalign.encoders.base import EncoderSpec
from crossalign.paths import cache_root

__all__ = ["FeatureCache", "content_hash"]


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class FeatureCache:
    def __init__(self, spec: EncoderSpec, root: Path | None = None):
        self.spec = spec
        self.dir = (Path(root) if root else cache_root() / "features") / spec.cache_key()
        self.dir.mkdir(parents=True, exist_ok=True)
        spec_file = self.dir / "spec.json"
        if not spec_file.exists():
            tmp = self.dir / f".spec-{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps(spec.to_dict(), indent=2))
            tmp.replace(spec_file)
        # float16 storage (cached tower activations, encoders/top.py) halves the disk and page cache;
        # reads always come back as float32
        self.dtype = np.float16 if spec.options.get("storage") == "float16" else np.float32
        self._index: dict[str, tuple[int, int]] = {}
        self._shards: dict[int, np.ndarray] = {}
        self.refresh()

    def refresh(self) -> None:
        """(Re)read which keys finished shards hold."""
        self._index.clear()
        for keys_file in sorted(self.dir.glob("shard-*.keys")):
            sid = int(keys_file.name.split("-")[1].split(".")[0])
            if not (self.dir / f"shard-{sid:06d}.npy").exists():
                continue
            for row, key in enumerate(keys_file.read_text().split()):
                self._index[key] = (sid, row)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k not in self._index]

    def _shard(self, sid: int) -> np.ndarray:
        if sid not in self._shards:
            self._shards[sid] = np.load(self.dir / f"shard-{sid:06d}.npy", mmap_mode="r")
        return self._shards[sid]

    def put(self, keys: list[str], feats: np.ndarray) -> None:
        """Append a finished batch of features as one new shard (atomic)."""
        if len(keys) != len(feats):
            raise ValueError("keys and features differ in length")
        if not keys:
            return
        feats = np.ascontiguousarray(feats, dtype=self.dtype)
        existing = [int(p.name.split("-")[1].split(".")[0]) for p in self.dir.glob("shard-*.npy")]
        sid = max(existing, default=-1) + 1
        tag = uuid.uuid4().hex
        tmp_npy, tmp_keys = self.dir / f".{tag}.npy", self.dir / f".{tag}.keys"
        np.save(tmp_npy, feats)
        tmp_keys.write_text("\n".join(keys) + "\n")
        with open(tmp_npy, "rb") as f:
            os.fsync(f.fileno())
        while True:  # another process may have taken this shard id meanwhile
            try:
                os.link(tmp_npy, self.dir / f"shard-{sid:06d}.npy")
                break
            except FileExistsError:
                sid += 1
        tmp_npy.unlink()
        tmp_keys.replace(self.dir / f"shard-{sid:06d}.keys")
        for row, key in enumerate(keys):
            self._index[key] = (sid, row)

    def get(self, key: str) -> np.ndarray:
        sid, row = self._index[key]
        return np.asarray(self._shard(sid)[row], dtype=np.float32)

    def get_many(self, keys: list[str], out: np.ndarray | None = None) -> np.ndarray:
        """Gather rows into `out` (allocated if None): (len(keys), *shape) float32."""
        shape = tuple(self.spec.output_shape)
        if out is None:
            out = np.empty((len(keys), *shape), dtype=np.float32)
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for i, k in enumerate(keys):
            sid, row = self._index[k]
            by_shard.setdefault(sid, []).append((i, row))
        for sid, pairs in by_shard.items():
            dst, src = zip(*pairs)
            out[list(dst)] = self._shard(sid)[list(src)]
        return out
