"""`SemiConfig`: how unpaired items take part in training (saved as `semi.json` in the run folder)."""

from __future__ import annotations

from dataclasses import dataclass, field

from crossalign.config import ConfigBase

__all__ = ["DEFAULT_METHOD", "METHODS", "SemiConfig"]

METHODS = ("pseudo-pairs", "self-training", "none")
DEFAULT_METHOD = "pseudo-pairs"  # only method measured to the end at 10 % pairs (docs/semi.md); thin evidence


@dataclass
class SemiConfig(ConfigBase):
    method: str = DEFAULT_METHOD  # pseudo-pairs | self-training | none (unpaired items ignored)
    weight: float = 1.0  # weight of the unpaired term next to the supervised objective
    unimodal: float = 0.0  # weight of the neighbourhood regulariser on unpaired items (0: off)
    refresh: int = 2  # epochs between refreshes of pseudo-targets / pseudo-pairs
    start: int = 1  # first epoch that uses unpaired items (heads first learn from the pairs)
    space: str = "head"  # where pseudo-targets are computed: "head" (current embeddings) or "tower" (features)
    ot_reg: float = 0.05  # Sinkhorn entropic regularisation, relative to the mean cost
    ot_balance: float | None = 1.0  # KL weight on the paired-side marginal (None: balanced Sinkhorn)
    top_k: int = 8  # soft targets kept per unpaired item
    max_candidates: int = 1024  # paired partners embedded per step for the soft targets
    precision: float = 0.9  # self-training: mutual-NN precision on validation that sets the threshold
    paired_fraction: float | None = None  # keep this seeded fraction of training rows paired (experiments)
    unpaired: list[str] = field(default_factory=list)  # extra manifests of unpaired items

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"semi.method must be one of {METHODS}, not {self.method!r}")
        if self.space not in ("head", "tower"):
            raise ValueError(f"semi.space must be head or tower, not {self.space!r}")
        if self.weight < 0 or self.unimodal < 0:
            raise ValueError("semi.weight and semi.unimodal must be >= 0")
        if self.refresh < 1 or self.start < 0 or self.top_k < 1 or self.max_candidates < 2:
            raise ValueError("semi: refresh >= 1, start >= 0, top_k >= 1, max_candidates >= 2")
        if self.ot_reg <= 0 or not 0 < self.precision <= 1:
            raise ValueError("semi: ot_reg > 0 and 0 < precision <= 1")
        if self.paired_fraction is not None and not 0 < self.paired_fraction <= 1:
            raise ValueError(f"paired fraction must be in (0, 1], got {self.paired_fraction}")
