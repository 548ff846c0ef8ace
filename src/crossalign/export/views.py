"""Per view of a run: a plain torch module from tensors to the shared space, for export.

Where the tower is torch and tensor-traceable (MiniLM, EfficientNet-Lite0, the from-scratch sensor
towers), the module holds tower + head + normalisation. Where it is not (CTranslate2 Whisper, the
4-bit e5 engine, token/word-level text features, any `hf:` tower), it holds the head alone and the
feature extractor is named in the metadata, so a user computes features with it first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from crossalign.align.heads import ProjectionHead, Standardize
from crossalign.align.io import load_run
from crossalign.align.model import AlignmentModel
from crossalign.config import RunConfig
from crossalign.encoders import Encoder, build_encoder
from crossalign.encoders.efficientnet import COLOR_DIM

__all__ = ["ViewPlan", "plan_view", "plan_views", "load_for_export", "tower_of", "TEXT_EXAMPLES"]

Kind = Literal["text-tower", "image-tower", "sensor-tower", "head"]

# Tracing inputs for text towers; parity is checked on these and on a user's test rows.
TEXT_EXAMPLES = ["a large red circle at the top left", "two small blue stars", "一个红色的圆"]


@dataclass
class ViewPlan:
    column: str
    modality: str
    kind: Kind
    module: nn.Module  # tensors -> (B, dim), unit norm
    inputs: list[str]  # ONNX input names, in forward order
    example: tuple[torch.Tensor, ...]
    dynamic_axes: dict[str, dict[int, str]]
    meta: dict[str, Any] = field(default_factory=dict)  # preprocessing / feature extractor facts


class _TextTowerHead(nn.Module):
    def __init__(self, hf_model: nn.Module, normalize: bool, head: ProjectionHead):
        super().__init__()
        self.model, self.normalize, self.head = hf_model, normalize, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, D)
        m = attention_mask.unsqueeze(-1).to(out.dtype)  # (B, T, 1)
        pooled = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, D)
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return self.head(pooled)


class _ImageTowerHead(nn.Module):
    def __init__(self, encoder: Encoder, head: ProjectionHead):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, pixels: torch.Tensor, color: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder.from_pixels(pixels, color))  # type: ignore[operator]


class _TowerHead(nn.Module):
    def __init__(self, tower: nn.Module, head: nn.Module):
        super().__init__()
        self.tower, self.head = tower, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tower(x), x)  # the linear path (if any) reads the tower's input


def _bins(n: int, out: int) -> torch.Tensor:
    """(out, n) averaging matrix with adaptive pooling's bins: [floor(i n / o), ceil((i+1) n / o))."""
    a = torch.zeros(out, n)
    for i in range(out):
        lo, hi = (i * n) // out, -(-((i + 1) * n) // out)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a


class _MatrixPool(nn.Module):
    """Adaptive average pooling for one known input size, as matrix products (any size exports)."""

    def __init__(self, in_size: tuple[int, ...], out_size: tuple[int, ...]):
        super().__init__()
        self.dims = len(in_size)
        self.register_buffer("a0", _bins(in_size[0], out_size[0]))
        self.register_buffer("a1", _bins(in_size[-1], out_size[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 1:
            return x @ self.a0.T  # (B, C, L) -> (B, C, o)
        return self.a0 @ x @ self.a1.T  # (B, C, H, W) -> (B, C, oh, ow)


def _fixed_pools(tower: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of `tower` with each adaptive average pool replaced by `_MatrixPool` for its input size:
    the TorchScript exporter refuses adaptive pooling whose output size does not divide the input."""
    import copy

    tower = copy.deepcopy(tower).eval()
    sizes: dict[str, tuple[int, ...]] = {}
    pools = {n: m for n, m in tower.named_modules() if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d))}
    hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: sizes.__setitem__(n, tuple(a[0].shape[2:])))
             for n, m in pools.items()]
    with torch.inference_mode():
        tower(example)
    for h in hooks:
        h.remove()
    for name, m in pools.items():
        dims = len(sizes[name])
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * dims
        parent, _, child = name.rpartition(".")
        setattr(tower.get_submodule(parent) if parent else tower, child, _MatrixPool(sizes[name], tuple(out)))
    return tower


def load_for_export(run: str | Path, which: str = "best") -> tuple[AlignmentModel, RunConfig]:
    """`load_run`, with LoRA adapters folded into the tower weights (an exported tower is plain)."""
    model, cfg = load_run(run, which)
    if cfg.model.tower_tuning:
        from crossalign.align.lora import merge_tuning

        for col in cfg.model.tower_tuning:
            merge_tuning(model.towers[col])  # type: ignore[arg-type]
    return model.eval(), cfg


def tower_of(model: AlignmentModel, col: str) -> Encoder:
    """The view's tower: the trained one inside the model, or the frozen pretrained one rebuilt."""
    if col in model.towers:
        return model.towers[col]  # type: ignore[return-value]
    spec = model.specs[col]
    return build_encoder(spec.name, modality=spec.modality, **spec.options)


def _is_pooled_hf_text(enc: Encoder) -> bool:
    from crossalign.encoders.minilm import HFTextEncoder

    return isinstance(enc, HFTextEncoder) and not enc.tokens and not enc.words


def _feature_example(head: ProjectionHead, shape: tuple[int, ...], n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((n, *shape), generator=g)
    if isinstance(head.norm, Standardize):  # features at the scale the head was fitted on
        x = head.norm.mean + head.norm.std * x
    return x


def plan_view(model: AlignmentModel, col: str, towers: bool = True) -> ViewPlan:
    """How view `col` is exported. `towers=False` exports every view as head-on-features."""
    spec = model.specs[col]
    head = model.view_head(col)  # head + the closed-form linear path, when the run has one
    extractor = {"encoder": spec.to_dict(), "note": "compute features with this crossalign encoder first"}
    batch = {0: "batch"}
    if spec.from_scratch:  # the tower is trained with the head: always part of the export
        tower = model.towers[col]
        shape = tuple(int(s) for s in spec.options["input_shape"])
        x = torch.randn((4, *shape), generator=torch.Generator().manual_seed(0))
        return ViewPlan(col, spec.modality, "sensor-tower", _TowerHead(_fixed_pools(tower, x), head), ["inputs"], (x,),
                        {"inputs": batch, "embedding": batch},
                        {"input": f"float32 array (batch, {', '.join(map(str, shape))}) in the manifest's units",
                         "encoder": spec.to_dict()})
    tuned = col in model.towers  # a fine-tuned tower: its features exist only through these weights
    if (towers or tuned) and spec.modality == "text" and (spec.name == "text:minilm" or tuned):
        enc = tower_of(model, col)
        if _is_pooled_hf_text(enc):
            tok = enc.tokenizer(TEXT_EXAMPLES, padding=True, truncation=True, max_length=enc.max_length,
                                return_tensors="pt")
            mod = _TextTowerHead(enc.model, enc.normalize, head)
            seq = {0: "batch", 1: "sequence"}
            return ViewPlan(col, "text", "text-tower", mod, ["input_ids", "attention_mask"],
                            (tok["input_ids"], tok["attention_mask"]),
                            {"input_ids": seq, "attention_mask": seq, "embedding": batch},
                            {"tokenizer": f"tokenizer-{col}", "max_length": enc.max_length,
                             "input": "token ids and attention mask from the tokenizer folder beside this file",
                             "encoder": spec.to_dict()})
    if (towers or tuned) and spec.name == "image:efficientnet-lite0":
        enc = tower_of(model, col)
        size = int(enc.size)  # type: ignore[attr-defined]
        x = torch.rand((2, 3, size, size), generator=torch.Generator().manual_seed(0))
        meta = {"input": f"RGB resized to {size}x{size} (bicubic, aspect ignored), float32 in [0, 1], "
                         "shape (batch, 3, H, W); ImageNet mean/std is applied inside",
                "size": size, "encoder": spec.to_dict()}
        if not enc.color:  # type: ignore[attr-defined]
            return ViewPlan(col, "image", "image-tower", _ImageTowerHead(enc, head), ["pixels"], (x,),
                            {"pixels": batch, "embedding": batch}, meta)
        # Colour statistics bin each pixel's hue, and scenes have many pixels exactly on a bin edge:
        # ONNX has no atan2 op, and its atan-based one differs by an ulp there, moving whole pixels
        # to the next bin (~1e-2 in the output). So they are an input, computed by the function named.
        grid = int(enc.grid)  # type: ignore[attr-defined]
        from crossalign.encoders.efficientnet import color_features

        meta["color"] = {"input": "color", "function": "crossalign.encoders.efficientnet.color_features",
                         "args": {"grid": grid}, "shape": ["batch", 1 + grid * grid, COLOR_DIM],
                         "why": "hue bins are discontinuous at pure colours; ONNX has no exact atan2"}
        return ViewPlan(col, "image", "image-tower", _ImageTowerHead(enc, head), ["pixels", "color"],
                        (x, color_features(x, grid)), {"pixels": batch, "color": batch, "embedding": batch}, meta)
    if tuned:
        raise ValueError(f"view '{col}': its fine-tuned {spec.name} tower cannot be exported (only MiniLM-style "
                         "pooled text, EfficientNet-Lite0 and the sensor towers can); a head alone would need "
                         "features only these tuned weights compute")
    shape = tuple(int(s) for s in spec.output_shape)
    return ViewPlan(col, spec.modality, "head", head, ["features"], (_feature_example(model.heads[col], shape),),
                    {"features": batch, "embedding": batch},
                    {"input": f"features (batch, {', '.join(map(str, shape))}) from the feature extractor",
                     "feature_extractor": extractor})


def plan_views(model: AlignmentModel, columns: list[str] | None = None, towers: bool = True) -> list[ViewPlan]:
    cols = columns or list(model.columns)
    unknown = [c for c in cols if c not in model.columns]
    if unknown:
        raise ValueError(f"this run has no view(s) {unknown}; it has {', '.join(model.columns)}")
    return [plan_view(model, c, towers) for c in cols]
