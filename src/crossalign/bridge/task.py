"""The bridge as a trainer `Task`: cached aligned embeddings + text targets in, LM loss out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from crossalign.bridge.model import Bridge
from crossalign.bridge.prompts import Example

__all__ = ["BridgeTask"]


class BridgeTask:
    greater_is_better = False
    primary = "mean_loss"  # not "loss": the trainer already shows the training loss under that name

    def __init__(self, bridge: Bridge, train: list[Example], train_emb: np.ndarray, val: list[Example],
                 val_emb: np.ndarray, lora_lr: float | None = None, bar: Any = None,
                 train_targets: np.ndarray | None = None, aux_weight: float = 0.0):
        """`*_emb[e.row]` is the aligned embedding an example is conditioned on; `train_targets[e.row]`
        its slot targets, whose attribute loss (weight `aux_weight`) joins the LM loss where the
        projector has one (`SlotProjector.aux_loss`)."""
        self.bridge, self.train, self.val = bridge, train, val
        self.train_emb = torch.from_numpy(np.ascontiguousarray(train_emb, dtype=np.float32))
        self.val_emb = torch.from_numpy(np.ascontiguousarray(val_emb, dtype=np.float32))
        self.lora_lr = lora_lr
        has_aux = hasattr(bridge.projector, "aux_loss") and train_targets is not None and aux_weight > 0
        self.targets = torch.from_numpy(train_targets) if has_aux and train_targets is not None else None
        self.aux_weight = aux_weight
        self.bar = bar  # per-step progress: an epoch of LM steps on CPU takes minutes
        # The trainer clips and optimises `model`'s parameters through `param_groups`; the LM itself
        # is frozen apart from LoRA adapters, which live inside it.
        self.model = torch.nn.ModuleDict({"projector": bridge.projector, "lm": bridge.lm.model})

    def num_train(self) -> int:
        return len(self.train)

    def param_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = [{"params": list(self.bridge.projector.parameters())}]
        lora = self.bridge.lora_parameters()
        if lora:
            groups.append({"params": lora, **({"lr": self.lora_lr} if self.lora_lr else {})})
        return groups

    def _loss(self, exs: list[Example], emb: torch.Tensor) -> torch.Tensor:
        z = emb[torch.tensor([e.row for e in exs])]  # (B, dim)
        return self.bridge.loss(z, [e.prompt for e in exs], [e.answer for e in exs])

    def training_forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        self.bridge.lm.model.eval()  # frozen LM: no dropout even while the projector trains
        exs = [self.train[int(i)] for i in idx]
        loss = lm_loss = self._loss(exs, self.train_emb)
        stats = {"caption_share": sum(e.kind == "caption" for e in exs) / len(exs)}
        if self.targets is not None:
            rows = torch.tensor([e.row for e in exs])
            aux = self.bridge.projector.aux_loss(self.train_emb[rows], self.targets[rows])
            loss = lm_loss + self.aux_weight * aux
            stats |= {"lm_loss": float(lm_loss.detach()), "aux_loss": float(aux.detach())}
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{float(lm_loss):.3f}")
        return {"loss": loss}, stats

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind in ("caption", "qa"):
            exs = [e for e in self.val if e.kind == kind]
            if exs:
                losses = [float(self._loss(exs[s:s + 16], self.val_emb)) * len(exs[s:s + 16])
                          for s in range(0, len(exs), 16)]
                out[f"{kind}_loss"] = sum(losses) / len(exs)
        out["mean_loss"] = float(np.mean(list(out.values()))) if out else float("nan")
        return out

    def save(self, folder: Path, name: str) -> None:
        self.bridge.save(folder, name)

    def load(self, folder: Path, name: str) -> None:
        self.bridge.projector.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
        if self.bridge.lora and (folder / f"{name}-lora.safetensors").exists():
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.bridge.lm.model, load_file(str(folder / f"{name}-lora.safetensors")))
