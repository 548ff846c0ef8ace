"""Query an index with raw values of any modality, through the run that built it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from crossalign.index.identity import IncompatibleRunError, run_identity
from crossalign.index.meta import Hit
from crossalign.index.store import VectorIndex

if TYPE_CHECKING:
    from crossalign.align.embedder import Embedder

__all__ = ["Searcher", "check_compatible"]


def check_compatible(ix: VectorIndex, run: str | Path) -> None:
    """Raise IncompatibleRunError when `run` would embed queries differently from the index."""
    if ix.identity is None:
        return
    ident = run_identity(run)
    diff = ix.identity.mismatch(ident)
    if diff:
        raise IncompatibleRunError(
            f"index {ix.path} was built with run {ix.identity.run_id} ({ix.identity.path}); the run at {run} is "
            f"{ident.run_id} and embeds differently: {'; '.join(diff)}. Query with the original run (--run), or "
            f"rebuild the index with this one (crossalign index build {run} ... --overwrite)."
        )


class Searcher:
    """An index plus the embedder of its run; refuses an incompatible run on construction."""

    def __init__(self, index: VectorIndex | None, embedder: "Embedder", check: bool = True):
        if check and index is not None:
            if embedder.run_dir is None:
                raise IncompatibleRunError(
                    "the embedder has no run folder, so its identity cannot be checked"
                )
            check_compatible(index, embedder.run_dir)
        self.index, self.embedder = index, embedder
        self._checked: set[str] = set()

    @classmethod
    def open(cls, index: str | Path, run: str | Path | None = None) -> "Searcher":
        from crossalign.align.embedder import Embedder

        ix = VectorIndex.open(index)
        if run is None:
            if ix.identity is None or not ix.identity.path:
                raise ValueError(f"{index}: the index records no run; pass one (--run)")
            run = Path(ix.identity.path)
            if not (run / "config.json").exists():
                raise FileNotFoundError(f"{index} was built with the run at {run}, which is gone; pass --run")
        check_compatible(ix, run)
        return cls(ix, Embedder.from_run(run), check=False)

    def column_for(self, modality_or_column: str) -> str:
        return self.embedder.column_for(modality_or_column)

    def check_encoder(self, col: str) -> None:
        """The installed encoder code must still produce what the run (and so the index) was built with."""
        if col in self._checked:
            return
        want = self.embedder.model.specs[col].version  # from the run's encoders.json
        have = self.embedder._encoder(col).spec.version  # noqa: SLF001 - the embedder builds and owns it
        if want is not None and have != want:
            raise IncompatibleRunError(
                f"view '{col}': the run (and its index) used encoder version {want}, the "
                f"installed encoder is {have}; retrain the run and rebuild the index"
            )
        self._checked.add(col)

    def embed_raw(self, modality_or_column: str, raws: Sequence[Any]) -> np.ndarray:
        """Already-read raw items (str, PIL image, Audio, array) -> (N, dim)."""
        col = self.column_for(modality_or_column)
        self.check_encoder(col)
        return self.embedder.embed_raw(col, raws)

    def embed(
        self, modality_or_column: str, values: Sequence[Any], base_dir: Path | None = None
    ) -> np.ndarray:
        col = self.column_for(modality_or_column)
        return self.embed_raw(col, self.embedder.read(col, values, base_dir))

    def search(
        self,
        modality_or_column: str,
        value: Any,
        k: int = 10,
        target: str | None = None,
        filters: dict[str, Any] | None = None,
        base_dir: Path | None = None,
    ) -> list[Hit]:
        """One query value (text, a file path, a PIL image, Audio, an array) -> ranked hits."""
        if self.index is None:
            raise ValueError("no index to search")
        q = self.embed(modality_or_column, [value], base_dir)
        return self.index.search(q, k, target, filters)[0]
