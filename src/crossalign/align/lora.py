"""Parameter-efficient tower tuning: LoRA adapters (peft) or partial unfreezing of a pretrained
tower's last blocks, chosen per view in the config:

    model:
      train_towers: [image]
      tower_tuning:
        image: {method: lora, r: 8, alpha: 16, last_blocks: 2}   # or {method: unfreeze, last_blocks: 2}

LoRA (Hu et al. 2021) adds a trainable low-rank update B A to chosen linear / 1x1 conv weights,
B starting at zero, so training starts exactly from the pretrained tower. Adapters are injected
in place (`peft.inject_adapter_in_model`), so they live in the run's `model.safetensors` beside
the heads and `load_run` rebuilds them from the config before loading. `merge_tuning` folds them
into the base weights for export (`align.io.export_merged`): the exported run is a plain fine-tuned tower.

BatchNorm layers of a tuned tower stay in eval mode (frozen ImageNet statistics): batch
statistics of small contrastive batches would otherwise shift every feature the heads were
fitted on.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from crossalign.config import TowerTuning
from crossalign.encoders import Encoder, TuningTargets

__all__ = ["TowerTuning", "apply_tuning", "merge_tuning", "trainable_summary"]


def _family(encoder: Encoder) -> TuningTargets:
    """Where the encoder's blocks are and what LoRA adapts: the encoder declares it."""
    fam = encoder.tuning_targets
    if fam is None:
        raise ValueError(f"tower tuning is not available for encoder '{encoder.spec.name}' "
                         "(its tuning_targets are not declared)")
    return fam


def _freeze_batchnorm(module: nn.Module, _inputs: Any) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _plain_pointwise(root: nn.Module, name: str) -> None:
    """Swap a 1x1 Conv2d subclass (EfficientNet's static-same-padding conv, whose padding is zero at
    1x1) for a plain nn.Conv2d with the same weights: peft builds its adapters with the target's own
    class, and that class cannot be constructed without an image size."""
    m = root.get_submodule(name)
    if not isinstance(m, nn.Conv2d) or type(m) is nn.Conv2d or m.kernel_size != (1, 1):
        return
    plain = nn.Conv2d(m.in_channels, m.out_channels, 1, stride=m.stride, groups=m.groups, bias=m.bias is not None)
    plain.load_state_dict(m.state_dict())
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, plain)


def apply_tuning(encoder: Encoder, tuning: TowerTuning | dict[str, Any]) -> Encoder:
    """Freeze the tower except the chosen part: LoRA adapters on, or the weights of, its last blocks."""
    t = tuning if isinstance(tuning, TowerTuning) else TowerTuning(**tuning)
    fam = _family(encoder)
    root = fam.root(encoder)
    blocks = fam.blocks(root)
    if t.last_blocks > len(blocks):
        raise ValueError(f"{encoder.spec.name} has {len(blocks)} blocks; last_blocks={t.last_blocks}")
    chosen = blocks[-t.last_blocks:]
    root.requires_grad_(False)
    if t.method == "unfreeze":
        for name in [*chosen, *fam.after]:
            root.get_submodule(name).requires_grad_(True)
    else:
        from peft import LoraConfig, inject_adapter_in_model

        inner = tuple(t.targets) or fam.lora
        names = [f"{b}.{x}" for b in chosen for x in inner] + list(fam.after_lora)
        for name in names:
            _plain_pointwise(root, name)
        cfg = LoraConfig(r=t.r, lora_alpha=t.alpha, lora_dropout=t.dropout, target_modules=names)
        inject_adapter_in_model(cfg, root)
        for n, p in root.named_parameters():  # adapters only (peft leaves them trainable; be explicit)
            p.requires_grad_("lora_" in n)
    encoder.register_forward_pre_hook(_freeze_batchnorm)
    encoder.tuning = t  # type: ignore[assignment]
    return encoder


def merge_tuning(encoder: Encoder) -> Encoder:
    """Fold LoRA adapters into the base weights and remove them (in place); no-op without LoRA."""
    from peft.tuners.lora import LoraLayer

    root = _family(encoder).root(encoder)
    for name, m in list(root.named_modules()):
        if isinstance(m, LoraLayer):
            m.merge()
            parent, _, child = name.rpartition(".")
            setattr(root.get_submodule(parent) if parent else root, child, m.get_base_layer())
    return encoder


def trainable_summary(module: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"parameters": total, "trainable": trainable}
