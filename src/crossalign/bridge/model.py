"""`Bridge`: a frozen causal LM, a prefix projector (and optional LoRA) over a run's shared space.

A saved bridge is a folder: `crossalign.json` (kind "bridge"), `bridge.json` (config naming the LM
and the run), `projector.safetensors` and, after a LoRA stage, `lora.safetensors`. No pickle.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager, Iterator, Sequence

import numpy as np
import torch
from safetensors.torch import load_file

from crossalign.align.precision import bf16_autocast_pays
from crossalign.bridge.config import BRIDGE_FORMAT, BridgeConfig, load_bridge_config
from crossalign.bridge.lm import LanguageModel, load_lm
from crossalign.bridge.projector import PrefixProjector
from crossalign.bridge.slots import SlotProjector, slot_word_embeddings
from crossalign.bridge.prompts import CAPTION_PROMPT
from crossalign.bridge.sequence import ChatFormat, build_batch, greedy_decode, prefix_loss
from crossalign.saved import atomic_write_json, read_contract, read_json, save_weights, write_contract

__all__ = ["Bridge", "BRIDGE_KIND"]

BRIDGE_KIND = "bridge"


def _prefix_projector(cfg: BridgeConfig, dim: int, lm: LanguageModel, target: float) -> torch.nn.Module:
    return PrefixProjector(dim, lm.hidden, cfg.prefix_tokens, cfg.projector, cfg.hidden, target)


def _slot_projector(cfg: BridgeConfig, dim: int, lm: LanguageModel, target: float) -> torch.nn.Module:
    words = slot_word_embeddings(lm.model.get_input_embeddings(), lm.tokenizer)
    return SlotProjector(dim, lm.hidden, words, cfg.slots, cfg.free_tokens, cfg.hidden, target)


# `projector` setting -> factory (config, shared-space dim, LM, typical token-embedding norm)
PROJECTORS = {"linear": _prefix_projector, "mlp": _prefix_projector, "slots": _slot_projector}


class Bridge:
    def __init__(self, cfg: BridgeConfig, lm: LanguageModel, projector: torch.nn.Module, embedder: Any = None):
        self.cfg, self.lm, self.projector, self.embedder = cfg, lm, projector, embedder
        self.fmt = ChatFormat(lm.tokenizer, cfg.system)
        self.lora = False

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def new(cls, cfg: BridgeConfig, dim: int, lm: LanguageModel | None = None, embedder: Any = None) -> "Bridge":
        lm = lm or load_lm(cfg.lm)
        w = lm.model.get_input_embeddings().weight.detach()
        target = float(w.norm(dim=-1).mean())  # typical token-embedding norm of this LM
        torch.manual_seed(cfg.seed)
        proj = PROJECTORS[cfg.projector](cfg, dim, lm, target)
        return cls(cfg, lm, proj, embedder)

    @classmethod
    def load(cls, folder: str | Path, lm: LanguageModel | None = None, embedder: Any = None,
             with_embedder: bool = True) -> "Bridge":
        """Load a bridge folder; the run's `Embedder` comes along unless `with_embedder=False`."""
        folder = Path(folder)
        read_contract(folder, (BRIDGE_KIND,), BRIDGE_FORMAT)  # a bridge from before crossalign.json: its bridge.json
        cfg = load_bridge_config(folder)
        if lm is None:
            from crossalign.encoders.hub import refuse_hub_ids

            refuse_hub_ids([cfg.lm], str(folder / "bridge.json"))
        meta = read_json(folder / "bridge.json", "a crossalign bridge")
        if embedder is None and with_embedder:
            from crossalign.align.embedder import Embedder

            embedder = Embedder.from_run(cfg.run)
        b = cls.new(cfg, int(meta["dim"]), lm=lm, embedder=embedder)
        b.projector.load_state_dict(load_file(str(folder / "projector.safetensors")))
        if (folder / "lora.safetensors").exists():
            b.enable_lora()
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(b.lm.model, load_file(str(folder / "lora.safetensors")))
        b.eval()
        return b

    def enable_lora(self) -> None:
        """Wrap the LM with LoRA adapters (trainable); everything else stays frozen."""
        if self.lora:
            return
        from peft import LoraConfig, get_peft_model

        k = self.cfg.cache_layers
        top: dict[str, Any] = {}
        if k:  # adapters only above the cached bottom layers (their outputs must not change)
            from crossalign.bridge.cached import num_layers

            n = num_layers(self.lm.model)
            if k >= n:
                raise ValueError(f"cache_layers {k} leaves no layer to train: {self.cfg.lm} has {n}")
            top = {"layers_to_transform": list(range(k, n)), "layers_pattern": "layers"}
        pc = LoraConfig(r=self.cfg.lora_r or 8, lora_alpha=self.cfg.lora_alpha, lora_dropout=0.0,
                        target_modules=list(self.cfg.lora_targets), bias="none", **top)
        self.lm.model = get_peft_model(self.lm.model, pc)
        self.lora = True

    def lora_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.lm.model.named_parameters() if "lora_" in n] if self.lora else []

    def save(self, folder: str | Path, name: str = "projector", extra: dict[str, Any] | None = None) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        parts = [f"{name}.safetensors", "bridge.json"]
        save_weights(folder / parts[0], self.projector.state_dict())
        if self.lora:
            from peft import get_peft_model_state_dict

            lname = "lora" if name == "projector" else f"{name}-lora"
            save_weights(folder / f"{lname}.safetensors", get_peft_model_state_dict(self.lm.model))
            parts.append(f"{lname}.safetensors")
        meta = self.cfg.to_dict() | {"dim": self.projector.dim, "lm_hidden": self.projector.lm_hidden}
        atomic_write_json(folder / "bridge.json", meta | (extra or {}))
        write_contract(folder, BRIDGE_KIND, BRIDGE_FORMAT, parts)

    def eval(self) -> "Bridge":
        self.projector.eval()
        self.lm.model.eval()
        return self

    @property
    def bf16(self) -> bool:
        """bf16 autocast for the frozen LM: asked for (`autocast_bf16`) and native on this CPU."""
        return self.cfg.autocast_bf16 and bf16_autocast_pays("cpu")

    def autocast(self) -> ContextManager[Any]:
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    # ---- forward ------------------------------------------------------------------------
    def prefix(self, z: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, dim) aligned embeddings -> (B, k, H) prefix vectors."""
        z = torch.as_tensor(np.asarray(z, dtype=np.float32)) if not isinstance(z, torch.Tensor) else z.float()
        if z.ndim != 2 or z.shape[1] != self.projector.dim:
            raise ValueError(f"expected embeddings of shape (B, {self.projector.dim}), got {tuple(z.shape)}")
        return self.projector(z)

    def loss(self, z: torch.Tensor, prompts: list[str], answers: list[str]) -> torch.Tensor:
        embed = self.lm.model.get_input_embeddings()
        x, mask, pos, lab = build_batch(embed, self.fmt, self.prefix(z), prompts, answers)
        with self.autocast():
            return prefix_loss(self.lm.model, x, mask, pos, lab, per_example=self.cfg.loss_per_example)

    @torch.inference_mode()
    def _steps(self, z: np.ndarray | torch.Tensor, prompts: list[str], max_new_tokens: int | None) -> Iterator[torch.Tensor]:
        embed = self.lm.model.get_input_embeddings()
        x, mask, pos, _ = build_batch(embed, self.fmt, self.prefix(z), prompts, None)
        with self.autocast():
            yield from greedy_decode(self.lm.model, x, mask, pos, self.fmt.stop_ids,
                                     max_new_tokens or self.cfg.max_new_tokens)

    def generate(self, z: np.ndarray | torch.Tensor, prompts: Sequence[str] | None = None,
                 max_new_tokens: int | None = None, batch_size: int = 64) -> list[str]:
        """Greedy answers for a batch of embeddings (default prompt: describe)."""
        z = np.asarray(z, dtype=np.float32)
        prompts = list(prompts) if prompts is not None else [CAPTION_PROMPT] * len(z)
        if len(prompts) != len(z):
            raise ValueError(f"{len(z)} embeddings but {len(prompts)} prompts")
        out: list[str] = []
        stop = set(self.fmt.stop_ids)
        for s in range(0, len(z), batch_size):
            toks = [t for t in self._steps(z[s:s + batch_size], prompts[s:s + batch_size], max_new_tokens)]
            ids = torch.stack(toks, 1).tolist() if toks else [[] for _ in range(len(z[s:s + batch_size]))]
            for row in ids:
                cut = next((i for i, t in enumerate(row) if t in stop), len(row))
                out.append(self.lm.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return out

    def stream(self, z: np.ndarray | torch.Tensor, prompt: str | None = None,
               max_new_tokens: int | None = None) -> Iterator[str]:
        """Text pieces of one greedy answer as they are produced."""
        z = np.asarray(z, dtype=np.float32).reshape(1, -1)
        ids: list[int] = []
        shown = ""
        for t in self._steps(z, [prompt or CAPTION_PROMPT], max_new_tokens):
            tok = int(t[0])
            if tok in self.fmt.stop_ids:
                break
            ids.append(tok)
            text = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                continue
            piece, shown = text[len(shown):], text
            if piece:
                yield piece

    # ---- raw inputs -----------------------------------------------------------------------
    def embed_input(self, modality: str, value: Any, base_dir: Path | None = None) -> np.ndarray:
        """A raw value (path, array, PIL image, Audio) of a modality or view column -> (1, dim)."""
        if self.embedder is None:
            raise RuntimeError("this bridge was loaded without its run's embedder")
        return self.embedder.embed(modality, [value], base_dir)

    def ask(self, modality: str, value: Any, question: str | None = None, base_dir: Path | None = None,
            max_new_tokens: int | None = None) -> Iterator[str]:
        """Stream the answer about one input; no question -> describe it."""
        return self.stream(self.embed_input(modality, value, base_dir)[0], question or CAPTION_PROMPT,
                           max_new_tokens)

    def answer(self, modality: str, value: Any, question: str | None = None, base_dir: Path | None = None,
               max_new_tokens: int | None = None) -> str:
        return "".join(self.ask(modality, value, question, base_dir, max_new_tokens)).strip()

