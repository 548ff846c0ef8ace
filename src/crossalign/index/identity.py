"""Which run produced an index: a content hash of the run, so a query from another run is refused.

Reads only the run's files (config.json, encoders.json, the weights `load_run` would pick); no
torch, so `crossalign.index` stays importable without the model stack.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crossalign.saved import weights_file

__all__ = ["RunIdentity", "run_identity", "IncompatibleRunError", "file_sha256", "WEIGHT_FILES"]

# Same preference order as crossalign.align.io.load_run(which="best").
WEIGHT_FILES = ("best", "model", "last")  # the order `crossalign.saved.weights_file(run, "best")` reads


class IncompatibleRunError(ValueError):
    """A query embedder does not match the run an index was built with."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _canonical(d: Any) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class RunIdentity:
    """Hashes of what determines the embeddings of a run, plus what a user needs to find it again."""

    run_id: str  # short hash of the three below: the one id to compare
    config_hash: str  # model section of config.json (training bookkeeping such as paths is ignored)
    encoders_hash: str  # encoders.json: encoder names, versions, options, output shapes
    weights_hash: str  # sha256 of the weights file load_run picks
    dim: int
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> EncoderSpec dict
    path: str = ""  # where the run was when the index was built (a hint, not part of the identity)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunIdentity":
        return cls(**d)

    def mismatch(self, other: "RunIdentity") -> list[str]:
        """Human-readable differences that change embeddings; empty when compatible."""
        out = []
        if self.dim != other.dim:
            out.append(f"dimension {self.dim} vs {other.dim}")
        if self.encoders_hash != other.encoders_hash:
            for col in sorted(set(self.encoders) | set(other.encoders)):
                a, b = self.encoders.get(col), other.encoders.get(col)
                if a is None or b is None:
                    out.append(f"view '{col}' only in one run")
                elif a != b:
                    out.append(
                        f"view '{col}' encoder {a.get('name')}@{a.get('version')} vs "
                        f"{b.get('name')}@{b.get('version')}"
                        + (
                            ""
                            if (a.get("name"), a.get("version")) != (b.get("name"), b.get("version"))
                            else " (options differ)"
                        )
                    )
        if self.config_hash != other.config_hash:
            out.append("model config differs")
        if self.weights_hash != other.weights_hash:
            out.append("weights differ")
        return out


def _weights_file(run: Path) -> Path:
    return weights_file(run, "best")  # the file `load_run(run)` reads


def routed_dim(model: dict[str, Any]) -> int:
    """Output width of a run from its config.json `model` section: `dim`, or with per-pair routes one
    block per pair of views (`dim` for the joint space, a closed form's `width`, ASIF's `anchors`;
    a mixture the sum of its parts; align/routes.py), plus a hubness correction's coordinates."""
    dim, routes = int(model.get("dim", 0)), model.get("routes") or {}
    cols = [v["column"] for v in model.get("views", [])]
    # a hubness correction appends 2 coordinates per corrected pair and a slack per view (align/hubness.py)
    n_hub = len(set((model.get("hubness") or {}).get("pairs") or {}) & {f"{a}|{b}" for i, a in enumerate(cols)
                                                                       for b in cols[i + 1:]})
    hub = 2 * n_hub + len(cols) if n_hub else 0
    if not routes:
        return dim + hub
    keys = [f"{a}|{b}" for i, a in enumerate(cols) for b in cols[i + 1:]]

    def width(r: dict[str, Any]) -> int:  # a mixture ("mix") is as wide as its parts together
        m = r.get("method", "joint")
        if m == "mix":
            return sum(width(p) for p in r.get("parts") or [])
        return dim if m == "joint" else int(r["anchors"]) if m == "asif" else int(r.get("width", dim))

    return sum(width(routes.get(k) or {}) for k in keys) + hub


def run_identity(run: str | Path) -> RunIdentity:
    run = Path(run).expanduser().resolve()
    if not (run / "config.json").exists() or not (run / "encoders.json").exists():
        raise FileNotFoundError(f"{run}: not a crossalign run (needs config.json and encoders.json)")
    cfg = json.loads((run / "config.json").read_text())
    # Only the model section decides embeddings; `train.out` or `progress` must not break an index
    # when a run folder is moved or re-trained with the same result.
    config_hash = hashlib.sha256(_canonical(cfg.get("model", cfg)).encode()).hexdigest()
    encoders = json.loads((run / "encoders.json").read_text())
    encoders_hash = hashlib.sha256(_canonical(encoders).encode()).hexdigest()
    weights_hash = file_sha256(_weights_file(run))
    run_id = hashlib.sha256(f"{config_hash}{encoders_hash}{weights_hash}".encode()).hexdigest()[:16]
    dim = routed_dim(cfg.get("model", {}))  # a routed run's vectors hold one block per pair of views
    return RunIdentity(run_id, config_hash, encoders_hash, weights_hash, dim, encoders, str(run))
