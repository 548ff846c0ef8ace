"""Many columns at once: encode each view of a manifest and keep the rows every view could read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from crossalign.config import ViewSpec
from crossalign.data.check import Problem
from crossalign.data.extract import ColumnFeatures, encode_column, infer_sensor_shape
from crossalign.data.manifest import Manifest, view_modality
from crossalign.encoders import DEFAULT_ENCODERS, Encoder, EncoderSpec, build_encoder, encoder_facts

__all__ = ["ViewSpec", "FeatureTable", "with_unpaired", "build_view_encoder", "encode_views", "view_encoder", "view_modality"]


def view_encoder(view: ViewSpec, manifest: Manifest | None = None) -> str:
    """The view's encoder name. With a manifest, an unset encoder is chosen from the column's name
    and content (data/encoder_choice.py, written into the view); without one, the modality's
    data-free default."""
    if manifest is not None:
        from crossalign.data.encoder_choice import resolve_view

        resolve_view(view, manifest)
    return view.encoder or DEFAULT_ENCODERS[view_modality(view)]


def build_view_encoder(view: ViewSpec, manifest: Manifest | None = None) -> Encoder:
    """Build the view's encoder; with a manifest, an unset encoder is chosen from the column's
    name and content first (data/encoder_choice.py) and written into the view."""
    name = view_encoder(view, manifest)
    opts = dict(view.options)
    if encoder_facts(name).needs_input_shape and "input_shape" not in opts:
        if manifest is None:
            raise ValueError(f"{name} needs input_shape")
        opts["input_shape"] = list(infer_sensor_shape(manifest, view.column, view_modality(view)))
        view.options["input_shape"] = opts["input_shape"]  # remembered in the run config
    return build_encoder(name, modality=view_modality(view), **opts)


@dataclass
class FeatureTable:
    """Row-aligned features of several views over the rows all of them could read."""

    manifest: Manifest
    rows: np.ndarray  # (N,) indices into manifest.rows
    features: dict[str, np.ndarray]  # column -> (N, *shape)
    specs: dict[str, EncoderSpec]  # column -> cache spec
    problems: list[Problem]

    def __len__(self) -> int:
        return len(self.rows)

    def meta(self, key: str) -> list[Any]:
        return [self.manifest.rows[int(i)].get(key) for i in self.rows]

    def groups(self) -> np.ndarray | None:
        """Integer group ids (rows sharing a group are positives), or None when there are no groups."""
        g = self.meta("group")
        if all(v is None for v in g):
            return None
        codes: dict[Any, int] = {}
        return np.array([codes.setdefault(v if v is not None else ("__row", k), len(codes))
                         for k, v in enumerate(g)], dtype=np.int64)

    def subset(self, mask: np.ndarray) -> "FeatureTable":
        return FeatureTable(self.manifest, self.rows[mask], {c: f[mask] for c, f in self.features.items()},
                            self.specs, self.problems)

    def split(self, name: str | None) -> "FeatureTable":
        if name is None:
            return self
        return self.subset(np.array([s == name for s in self.meta("split")], dtype=bool))


def with_unpaired(table: FeatureTable, col: str, extra: Mapping[str, np.ndarray] | None) -> np.ndarray:
    """A view's features on the table's rows followed by its unpaired items (`extra`, semi-supervised
    runs), what input standardisation is fitted on; the table's own features when there are none."""
    if extra is None or not len(extra.get(col, ())):
        return np.asarray(table.features[col])
    return np.concatenate([table.features[col], extra[col]])


def encode_views(manifest: Manifest, views: list[ViewSpec], *, encoders: dict[str, Encoder] | None = None,
                 batch_size: int = 32, progress: bool = False, cache_dir: Path | None = None) -> FeatureTable:
    encoders = dict(encoders or {})
    if any(v.encoder is None for v in views if v.column not in encoders):
        from crossalign.data.encoder_choice import resolve_views

        resolve_views([v for v in views if v.column not in encoders], manifest)  # chosen together, not one by one
    cols: dict[str, ColumnFeatures] = {}
    for v in views:
        enc = encoders.get(v.column) or build_view_encoder(v, manifest)
        encoders[v.column] = enc
        cols[v.column] = encode_column(manifest, v.column, enc, batch_size=batch_size, progress=progress,
                                       cache_dir=cache_dir, modality=view_modality(v))
    common = None
    for cf in cols.values():
        common = set(cf.rows.tolist()) if common is None else common & set(cf.rows.tolist())
    keep = np.array(sorted(common or ()), dtype=np.int64)
    feats = {}
    for c, cf in cols.items():
        pos = {int(r): j for j, r in enumerate(cf.rows)}
        feats[c] = cf.features[[pos[int(r)] for r in keep]] if len(keep) else cf.features[:0]
    problems = sorted((p for cf in cols.values() for p in cf.problems), key=lambda p: (p.row, p.column))
    return FeatureTable(manifest, keep, feats, {c: cf.spec for c, cf in cols.items()}, problems)
