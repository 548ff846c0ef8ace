"""Persistent vector index over the shared space: FAISS + metadata, crash-safe, run-checked.

Imports without the server (and without torch until a run is actually used).
"""

from crossalign.index.backends import KINDS, IndexParams
from crossalign.index.build import BuildReport, add_to_index, build_index, delete_from_index
from crossalign.index.identity import IncompatibleRunError, RunIdentity, run_identity
from crossalign.index.meta import FilterError, Hit
from crossalign.index.query import Searcher, check_compatible
from crossalign.index.store import CorruptIndexError, IndexLockedError, VectorIndex

__all__ = [
    "VectorIndex",
    "IndexParams",
    "KINDS",
    "Hit",
    "FilterError",
    "RunIdentity",
    "run_identity",
    "IncompatibleRunError",
    "CorruptIndexError",
    "IndexLockedError",
    "build_index",
    "add_to_index",
    "delete_from_index",
    "BuildReport",
    "Searcher",
    "check_compatible",
]
