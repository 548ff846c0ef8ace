"""The alignment model: per view, an optional trainable tower and a projection head into one space."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crossalign.align.heads import LinearPath, ProjectionHead
from crossalign.align.hubness import HubCorrection
from crossalign.align.objectives import check_objective
from crossalign.align.routes import Router
from crossalign.config import HeadConfig, ModelConfig
from crossalign.encoders import Encoder, EncoderSpec

__all__ = ["AlignmentModel", "ViewHead", "linear_input_shape"]


class AlignmentModel(nn.Module):
    """Holds, per view (manifest column):
    - `towers[col]`: encoders whose weights train (sensor towers from scratch, or a pretrained tower
      listed in `train_towers`); frozen pretrained towers stay outside and feed cached features;
    - `heads[col]`: projection head (standardise -> linear/MLP -> L2 normalise);
    - `linear[col]` (with `head.linear_path`): a gated residual linear map from the view's input
      (cached features, or a from-scratch tower's input) that holds the closed-form start;
    plus a learnable logit scale (clamped) and a bias for sigmoid objectives.

    `forward({col: input})` -> `{col: (B, dim)}` where input is the cached tensor for frozen views
    and the tower's input (preprocessed tensor, or raw list for fine-tuned pretrained towers).
    """

    def __init__(self, cfg: ModelConfig, specs: dict[str, EncoderSpec], towers: dict[str, Encoder] | None = None):
        super().__init__()
        check_objective(cfg)  # its name and the number of views it takes (the config knows no registry)
        self.cfg = cfg
        self.specs = dict(specs)  # encoder spec per column (outputs the heads take)
        self.towers = nn.ModuleDict(towers or {})
        self.heads = nn.ModuleDict()
        for col in cfg.columns:
            spec = specs[col]
            # Standardisation is fitted on cached features; a trained tower's outputs move, so none there,
            # except a tuned top (tune_last): it starts at the frozen features and stays near them, so
            # its standardisation is fitted on the untuned top's outputs and then held.
            self.heads[col] = ProjectionHead(tuple(spec.output_shape), cfg.dim, cfg.head,
                                             standardize=col not in self.towers or spec.tune_last > 0)
        self.linear = nn.ModuleDict()
        if cfg.head.linear_path:
            for col in cfg.columns:
                shape = linear_input_shape(specs[col], col in self.towers)
                if shape is not None:
                    k = cfg.head.kernel.get(col)
                    self.linear[col] = LinearPath(shape, cfg.dim, (int(k[0]), int(k[1])) if k else None)
        # `cfg.members`: other trained models of these views that a route may serve a pair by
        # ({"method": "member", "member": NAME}), e.g. the other federation of `federate --start auto`.
        # Each differs only in its heads ({NAME: {"head": HeadConfig}}) and holds its own from-scratch
        # towers (this model's structure copied, weights loaded with the model's).
        self.members = nn.ModuleDict()
        for name, m in cfg.members.items():
            if not isinstance(m, dict) or set(m) != {"head"}:
                raise ValueError(f"model.members['{name}']: expected {{'head': {{...}}}} (a member differs only in its heads)")
            if any(specs[c].tune_last for c in self.towers) or cfg.train_towers:
                raise ValueError("model.members: a member cannot share tuned pretrained towers (train_towers, tune_last)")
            head = m["head"] if isinstance(m["head"], HeadConfig) else HeadConfig.from_dict(m["head"], f"model.members.{name}.head")
            mcfg = replace(cfg, head=head, routes={}, hubness={}, members={})
            self.members[name] = AlignmentModel(mcfg, specs, {c: copy.deepcopy(t) for c, t in self.towers.items()})
        for p in self.members.parameters():  # fixed, chosen on validation: nothing there trains
            p.requires_grad_(False)
        # Per-pair routing (align/routes.py): each pair of views served in its own block of the output.
        self.router = Router(cfg.columns, cfg.routes, {c: linear_input_shape(specs[c], c in self.towers)
                                                       for c in cfg.columns}, cfg.dim,
                             members=dict(self.members)) if cfg.routes else None
        # Hubness correction (align/hubness.py): CSLS per pair, appended to the (routed) vectors.
        width = self.router.out_dim if self.router is not None else cfg.dim
        self.hub = (HubCorrection(cfg.columns, cfg.hubness, width, self.router.blocks if self.router else None)
                    if cfg.hubness.get("pairs") else None)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)),
                                        requires_grad=cfg.learn_temperature)
        self.logit_bias = nn.Parameter(torch.tensor(float(cfg.siglip_bias)))

    @property
    def columns(self) -> list[str]:
        return self.cfg.columns

    @property
    def out_dim(self) -> int:
        """Width of the vectors `embed` returns: `cfg.dim`, or the routed blocks' total width, plus the
        hubness correction's coordinates."""
        width = self.router.out_dim if self.router is not None else self.cfg.dim
        return width + (self.hub.width if self.hub is not None else 0)

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped so training cannot blow the temperature up (CLIP uses 100)."""
        return self.logit_scale.clamp(max=math.log(self.cfg.max_logit_scale)).exp()

    def embed(self, col: str, x: Any) -> torch.Tensor:
        inp = x
        if col in self.towers:
            x = self.towers[col](x)
        return self.project(col, x, inp)

    def project(self, col: str, feats: torch.Tensor, inp: Any = None) -> torch.Tensor:
        """Tower output (or cached features) -> the shared space: the head, plus the view's linear
        path where it has one (which reads the tower's input for from-scratch towers, else `feats`).
        Every room that runs a tower itself (export, explain, fusion) projects through here."""
        return _project(self.heads[col], self.linear[col] if col in self.linear else None, self.reads_input(col),
                        feats, inp, self.router, col, self.hub)

    def reads_input(self, col: str) -> bool:
        """The view's linear path reads its tower's input (a from-scratch tower), not its features."""
        return col in self.towers and not self.specs[col].tune_last

    def linear_source(self, col: str, x: torch.Tensor) -> torch.Tensor:
        """What the view's linear path reads, from its cached features: a tuned top's (tune_last)
        outputs, else the cached tensor itself. The closed-form start is fitted on this."""
        if col in self.towers and self.specs[col].tune_last:
            return _tower_outputs(self.towers[col], x)
        return x.float()

    def view_head(self, col: str) -> "ViewHead":
        """`project` for one view as a module of its own (features -> shared space), e.g. for ONNX."""
        return ViewHead(self, col)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {col: self.embed(col, x) for col, x in batch.items() if col in self.heads}

    def frozen_keys(self) -> set[str]:
        """State-dict keys of the frozen lower parts of tuned-top towers (tune_last): the packaged
        pretrained weights, rebuilt with the encoder, so a run folder carries only the tuned top
        (MiniLM: 7 MB for one layer instead of 90 MB)."""
        out = set()
        for col, tower in self.towers.items():
            if self.specs[col].tune_last:
                top = tuple(tower.top_prefixes())  # type: ignore[operator]
                out |= {f"towers.{col}.{k}" for k in tower.state_dict() if not k.startswith(top)}
        return out

    def weights(self) -> dict[str, torch.Tensor]:
        """What a run folder saves: the state dict without the frozen lower parts."""
        frozen = self.frozen_keys()
        return {k: v for k, v in self.state_dict().items() if k not in frozen}

    def load_weights(self, sd: dict[str, torch.Tensor], where: str = "weights") -> None:
        """Load saved weights strictly: only frozen lower parts may be absent (older runs hold them too)."""
        missing, unexpected = self.load_state_dict(sd, strict=False)
        missing = [k for k in missing if k not in self.frozen_keys()]
        if missing or unexpected:
            raise ValueError(f"{where}: weights do not fit this model: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")

    def fit_normalizers(self, feats: dict[str, torch.Tensor]) -> None:
        """Fit each frozen view's input standardisation (and every linear path's) on training features;
        a tune_last view's on what its (untuned) top makes of its cached activations."""
        for col, x in feats.items():
            head = self.heads[col]
            fit_head = hasattr(head.norm, "fit") and (col not in self.towers or self.specs[col].tune_last)
            if not fit_head and col not in self.linear:
                continue
            src = self.linear_source(col, x)  # a tuned top runs once over the training split
            if fit_head:
                head.norm.fit(src)
            if col in self.linear:
                self.linear[col].norm.fit(src)


@torch.no_grad()
def _tower_outputs(tower: nn.Module, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    was = tower.training
    tower.eval()
    try:
        return torch.cat([tower(x[s:s + chunk]).float() for s in range(0, len(x), chunk)])
    finally:
        tower.train(was)


def linear_input_shape(spec: EncoderSpec, towered: bool) -> tuple[int, ...] | None:
    """What a view's linear path reads: cached features (or a tuned top's outputs, which start as
    those features), or a from-scratch tower's input array; None for fine-tuned pretrained towers
    (their input is raw text, images or audio)."""
    if not towered or spec.tune_last:
        return tuple(spec.output_shape)
    shape = spec.options.get("input_shape") if spec.from_scratch else None
    return tuple(int(s) for s in shape) if shape else None


class ViewHead(nn.Module):
    """One view's projection (head + linear path) as a module: forward(feats, inp=None) -> (B, dim)."""

    def __init__(self, model: AlignmentModel, col: str):
        super().__init__()
        self.col = col
        self.head = model.heads[col]
        self.linear = model.linear[col] if col in model.linear else None
        self.reads_input = model.reads_input(col)  # the linear path of a from-scratch tower reads its input
        self.router = model.router
        self.hub = model.hub

    def forward(self, feats: torch.Tensor, inp: torch.Tensor | None = None) -> torch.Tensor:
        return _project(self.head, self.linear, self.reads_input, feats, inp, self.router, self.col, self.hub)


def _project(head: ProjectionHead, lp: LinearPath | None, reads_input: bool, feats: torch.Tensor,
             inp: Any, router: Router | None = None, col: str = "", hub: HubCorrection | None = None
             ) -> torch.Tensor:
    """normalize(gate * head(feats) + linear(src)): the closed-form path and the head, summed; then,
    in a routed model, that joint vector placed among the view's per-pair blocks; then, with a
    hubness correction, its coordinates appended."""
    src = inp if (reads_input and inp is not None) else feats
    if lp is None:
        z = head(feats)
    elif not lp.gate.requires_grad and float(lp.gate) == 0.0:  # a view held still at its closed form (hybrid)
        z = F.normalize(lp(src), dim=-1)
    else:
        z = F.normalize(lp.gate * head.project(feats) + lp(src), dim=-1)
    z = z if router is None else router(col, z, src)
    return z if hub is None else hub(col, z)
