"""`sensor:mlp`, `sensor:conv1d`, `sensor:conv2d`: small towers for numeric signals, trained from scratch.

They have no pretrained weights, so the feature cache stores their *inputs* (the validated,
fixed-shape arrays) and the tower itself trains with the projection heads on those cached inputs.
The first layer standardises inputs with running statistics, so raw units (dB, metres, counts)
need no manual scaling.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from crossalign.encoders import default_sensor_tower, encoder_facts
from crossalign.encoders.base import Encoder, EncoderSpec

__all__ = ["SensorEncoder", "sensor_mlp", "sensor_conv1d", "sensor_conv2d", "SENSOR_INPUT_VERSION"]

SENSOR_INPUT_VERSION = "inputs/1"


class SensorEncoder(Encoder):
    def __init__(self, kind: str, input_shape: Sequence[int], dim: int = 256, width: int = 64):
        super().__init__()
        self.kind, self.input_shape, self.dim = kind, tuple(int(s) for s in input_shape), int(dim)
        shape = self.input_shape
        ranks = encoder_facts(f"sensor:{kind}").input_ranks
        if ranks and len(shape) not in ranks:  # fail here, not as a torch traceback mid-training
            hint = default_sensor_tower(shape)
            raise ValueError(f"sensor:{kind} takes {' or '.join(f'{r}-D' for r in ranks)} arrays, "
                             f"got {len(shape)}-D {shape}: use {hint}")
        if kind == "mlp":
            n = math.prod(shape)
            self.net: nn.Module = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(n, affine=False), nn.Linear(n, 512),
                                                nn.GELU(), nn.Linear(512, self.dim))
        elif kind == "conv1d":
            c = shape[0] if len(shape) == 2 else 1
            self.net = nn.Sequential(
                nn.BatchNorm1d(c, affine=False),
                nn.Conv1d(c, width, 7, padding=3), nn.GELU(), nn.MaxPool1d(2),
                nn.Conv1d(width, width * 2, 5, padding=2), nn.GELU(), nn.MaxPool1d(2),
                nn.Conv1d(width * 2, width * 2, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool1d(8),
                nn.Flatten(), nn.Linear(width * 2 * 8, self.dim))
        elif kind == "conv2d":
            c = shape[0] if len(shape) == 3 else 1
            # Pool early: full-resolution wide convolutions cost ~4x more for no accuracy on 32x24 maps.
            self.net = nn.Sequential(
                nn.BatchNorm2d(c, affine=False),
                nn.Conv2d(c, width // 2, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
                nn.Conv2d(width // 2, width, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
                nn.Conv2d(width, width * 2, 3, padding=1), nn.GELU(),
                # Keep a coarse 4x4 layout: where a return sits (range, azimuth) is the signal.
                nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(width * 2 * 16, self.dim))
            # NHWC: the CPU's max-pool and convolution backward are ~1.3x faster per training step
            # (benchmarks/sensor_tower.py); same values, Flatten still reads (C, H, W) order
            self.net = self.net.to(memory_format=torch.channels_last)
        else:
            raise ValueError(f"unknown sensor encoder kind '{kind}' (mlp, conv1d, conv2d)")
        self.spec = EncoderSpec(name=f"sensor:{kind}", modality="sensor", version="scratch/2",
                                output_shape=(self.dim,), trainable=True, from_scratch=True,
                                options={"input_shape": list(self.input_shape), "dim": self.dim, "width": width})
        self.eval()  # like every encoder; the trainer switches it to training mode itself

    @property
    def cache_spec(self) -> EncoderSpec:
        return EncoderSpec(name="sensor:inputs", modality="sensor", version=SENSOR_INPUT_VERSION,
                           output_shape=self.input_shape, trainable=False,
                           options={"input_shape": list(self.input_shape)})

    def preprocess(self, batch: Sequence[Any]) -> torch.Tensor:
        arrs = []
        for a in batch:
            a = np.asarray(a, dtype=np.float32)
            if a.shape != self.input_shape:
                if a.size == math.prod(self.input_shape) and self.kind == "mlp":
                    a = a.reshape(self.input_shape)
                else:
                    raise ValueError(f"sensor array has shape {a.shape}, expected {self.input_shape}")
            arrs.append(a)
        return torch.from_numpy(np.stack(arrs))  # (B, *input_shape)

    def forward(self, x: torch.Tensor | Sequence[Any]) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = self.preprocess(x)
        x = x.float()
        if self.kind == "conv1d" and x.dim() == 2:
            x = x.unsqueeze(1)  # (B, L) -> (B, 1, L)
        if self.kind == "conv2d":
            if x.dim() == 3:
                x = x.unsqueeze(1)  # (B, H, W) -> (B, 1, H, W)
            x = x.contiguous(memory_format=torch.channels_last)  # same tensor, NHWC strides
        return self.net(x)


def _shape(input_shape: Any) -> tuple[int, ...]:
    if input_shape is None:
        raise ValueError("sensor encoders need input_shape (inferred from the data when encoding a manifest)")
    return tuple(int(s) for s in input_shape)


def sensor_mlp(input_shape: Any = None, dim: int = 256, width: int = 64) -> SensorEncoder:
    return SensorEncoder("mlp", _shape(input_shape), dim, width)


def sensor_conv1d(input_shape: Any = None, dim: int = 256, width: int = 64) -> SensorEncoder:
    return SensorEncoder("conv1d", _shape(input_shape), dim, width)


def sensor_conv2d(input_shape: Any = None, dim: int = 256, width: int = 64) -> SensorEncoder:
    return SensorEncoder("conv2d", _shape(input_shape), dim, width)
