"""The bridge as a trainer `Task`: cached aligned embeddings + text targets in, LM loss out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from crossalign.bridge.cached import CachedInputs, run_layers
from crossalign.bridge.model import Bridge
from crossalign.bridge.prompts import Example
from crossalign.bridge.sequence import answer_loss, build_batch

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
        # cache_layers > 0: the projector is frozen and the LM's bottom layers run once per example
        # (bridge/cached.py); steps train the LoRA'd layers above from those activations.
        self.k = bridge.cfg.cache_layers
        self.cache: dict[str, CachedInputs] = {}
        if self.k:
            for p in bridge.projector.parameters():
                p.requires_grad_(False)
            self.targets = None  # no gradient reaches the slot heads: no attribute loss either
            self.cache = {"train": self._build_cache(train, self.train_emb, progress=bar is not None),
                          "val": self._build_cache(val, self.val_emb, progress=False)}
        # The trainer clips and optimises `model`'s parameters through `param_groups`; the LM itself
        # is frozen apart from LoRA adapters, which live inside it.
        self.model = torch.nn.ModuleDict({"projector": bridge.projector, "lm": bridge.lm.model})

    def num_train(self) -> int:
        return len(self.train)

    def _build_cache(self, exs: list[Example], emb: torch.Tensor, progress: bool) -> CachedInputs:
        b, fmt = self.bridge, self.bridge.fmt
        b.projector.eval()  # the frozen prefix, without dropout, as generation will see it
        embed = b.lm.model.get_input_embeddings()
        lens = [sum(map(len, fmt.prompt(e.prompt))) + len(fmt.answer(e.prompt, e.answer)) for e in exs]
        order = sorted(range(len(exs)), key=lens.__getitem__)  # similar lengths together: little padding

        def make(idx: list[int]) -> Any:
            return lambda: build_batch(embed, fmt, b.prefix(emb[[exs[i].row for i in idx]]),
                                       [exs[i].prompt for i in idx], [exs[i].answer for i in idx])

        batches = [(order[s:s + 32], make(order[s:s + 32])) for s in range(0, len(order), 32)]
        bar = None
        if progress:
            from crossalign.progress import progress_bar

            bar = progress_bar(total=len(exs), desc=f"bridge: LM layers 0-{self.k} once", unit="ex")
        dtype = torch.bfloat16 if b.bf16 else torch.float32
        with b.autocast():
            cache = CachedInputs(self.k, dtype).build(b.lm.model, batches, len(exs), bar)
        if bar is not None:
            bar.close()
        return cache

    def param_groups(self) -> list[dict[str, Any]]:
        if self.k:  # frozen projector: only the adapters train
            return [{"params": self.bridge.lora_parameters(), **({"lr": self.lora_lr} if self.lora_lr else {})}]
        groups: list[dict[str, Any]] = [{"params": list(self.bridge.projector.parameters())}]
        lora = self.bridge.lora_parameters()
        if lora:
            groups.append({"params": lora, **({"lr": self.lora_lr} if self.lora_lr else {})})
        return groups

    def _loss(self, split: str, idx: list[int]) -> torch.Tensor:
        exs, emb = (self.train, self.train_emb) if split == "train" else (self.val, self.val_emb)
        if not self.k:
            z = emb[torch.tensor([exs[i].row for i in idx])]  # (B, dim)
            return self.bridge.loss(z, [exs[i].prompt for i in idx], [exs[i].answer for i in idx])
        x, mask, pos, lab = self.cache[split].batch(idx)  # (B, T, H) after the bottom k layers
        lm = self.bridge.lm.model
        with self.bridge.autocast():
            h = run_layers(lm, x, mask, pos, self.k, None, final_norm=True)
            return answer_loss(lm, h, lab, per_example=self.bridge.cfg.loss_per_example)

    def training_forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        self.bridge.lm.model.eval()  # frozen LM: no dropout even while the projector trains
        ids = [int(i) for i in idx]
        exs = [self.train[i] for i in ids]
        loss = lm_loss = self._loss("train", ids)
        stats = {"caption_share": sum(e.kind == "caption" for e in exs) / len(exs)}
        if self.targets is not None:
            rows = torch.tensor([e.row for e in exs])
            aux = self.bridge.projector.aux_loss(self.train_emb[rows], self.targets[rows])
            loss = lm_loss + self.aux_weight * aux
            stats |= {"lm_loss": float(lm_loss.detach()), "aux_loss": float(aux.detach())}
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{float(lm_loss.detach()):.3f}")
        return {"loss": loss}, stats

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind in ("caption", "qa"):
            ids = [i for i, e in enumerate(self.val) if e.kind == kind]
            if ids:
                losses = [float(self._loss("val", ids[s:s + 16])) * len(ids[s:s + 16]) for s in range(0, len(ids), 16)]
                out[f"{kind}_loss"] = sum(losses) / len(ids)
        out["mean_loss"] = float(np.mean(list(out.values()))) if out else float("nan")
        return out

    def save(self, folder: Path, name: str) -> None:
        self.bridge.save(folder, name)

    def load(self, folder: Path, name: str) -> None:
        self.bridge.projector.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
        if self.bridge.lora and (folder / f"{name}-lora.safetensors").exists():
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.bridge.lm.model, load_file(str(folder / f"{name}-lora.safetensors")))
