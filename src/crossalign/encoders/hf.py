"""`hf:<model id or local path>`: generic Hugging Face towers for users with a network.

The modality decides the tower: text -> AutoModel + AutoTokenizer (mean pooled, or CLIP/SigLIP
`get_text_features`); image -> AutoImageProcessor + vision model (CLIP/SigLIP `get_image_features`,
else pooled last hidden state); audio -> AutoFeatureExtractor + AutoModel, mean over time.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from crossalign.encoders.base import HF_LAYERS, Encoder, EncoderSpec
from crossalign.modalities.audio import TARGET_SR

__all__ = ["HFEncoder", "hf_encoder"]


class HFEncoder(Encoder):
    tuning_targets = HF_LAYERS

    def __init__(self, path: str, modality: str, normalize: bool = True, max_length: int = 77):
        super().__init__()
        import transformers as tf

        self.path, self.modality, self.normalize, self.max_length = path, modality, normalize, max_length
        cfg = tf.AutoConfig.from_pretrained(path)
        self.dual = hasattr(cfg, "text_config") and hasattr(cfg, "vision_config")  # CLIP / SigLIP style
        if modality == "text":
            self.proc = tf.AutoTokenizer.from_pretrained(path)
        elif modality == "image":
            self.proc = tf.AutoImageProcessor.from_pretrained(path)
        elif modality == "audio":
            self.proc = tf.AutoFeatureExtractor.from_pretrained(path)
        else:
            raise ValueError(f"hf: encoders cover text, image and audio, not '{modality}'")
        self.model = tf.AutoModel.from_pretrained(path, use_safetensors=True).eval()  # never a pickle
        dim = self._probe_dim()
        self.spec = EncoderSpec(name=f"hf:{path}", modality=modality, version=f"hf/{cfg.model_type}/1",
                                output_shape=(dim,), trainable=True,
                                # the tower is part of the key: CLIP's text and image sides share name
                                # and version but must not share a cache folder
                                options={"normalize": normalize, "tower": modality})

    def _probe_dim(self) -> int:
        probe: dict[str, list[Any]] = {
            "text": ["probe"],
            "image": [__import__("PIL.Image", fromlist=["Image"]).new("RGB", (32, 32))],
            "audio": [np.zeros(TARGET_SR // 2, dtype=np.float32)],
        }
        with torch.inference_mode():
            return int(self.forward(probe[self.modality]).shape[-1])

    def _pool(self, out: Any, mask: torch.Tensor | None = None) -> torch.Tensor:
        if getattr(out, "pooler_output", None) is not None and self.modality == "image":
            return out.pooler_output
        h = out.last_hidden_state  # (B, T, D)
        if mask is None:
            return h.mean(1)
        m = mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def _frame_mask(self, wavs: Sequence[np.ndarray], padded_len: int) -> torch.Tensor | None:
        """(B, F) mask of output frames that hold real audio, so batch padding is not pooled.

        Without it a short clip's vector depends on the longest clip it is batched with. The
        lengths come from the waveforms, so models whose extractor returns no attention mask
        (wav2vec2-base) are covered too.
        """
        lengths_fn = getattr(self.model, "_get_feat_extract_output_lengths", None)  # wav2vec2, HuBERT, WavLM
        if lengths_fn is None:
            return None
        n_out = lengths_fn(torch.tensor([len(w) for w in wavs]))  # (B,) frames per clip
        n_max = int(lengths_fn(torch.tensor(padded_len)))
        return (torch.arange(n_max)[None, :] < n_out[:, None]).long()  # (B, F)

    def forward(self, batch: Sequence[Any]) -> torch.Tensor:
        if self.modality == "text":
            enc = self.proc(list(batch), padding=True, truncation=True, max_length=self.max_length,
                            return_tensors="pt")
            if self.dual:
                z = self.model.get_text_features(**enc)
            else:
                z = self._pool(self.model(**enc), enc["attention_mask"])
        elif self.modality == "image":
            enc = self.proc(images=list(batch), return_tensors="pt")
            z = self.model.get_image_features(**enc) if self.dual else self._pool(self.model(**enc))
        else:
            wavs = [getattr(a, "wav", a) for a in batch]
            enc = self.proc(wavs, sampling_rate=TARGET_SR, return_tensors="pt", padding=True)
            padded = enc["input_values"].shape[-1] if "input_values" in enc else 0
            z = self._pool(self.model(**enc), self._frame_mask(wavs, padded) if padded else None)
        if not isinstance(z, torch.Tensor):  # some versions return a model output object
            z = z.pooler_output
        z = z.float()
        return F.normalize(z, dim=-1) if self.normalize else z


def hf_encoder(path: str, modality: str = "text", **opts: Any) -> Encoder:
    from crossalign.encoders.st_folder import SentenceTransformerEncoder, is_st_folder

    tower = opts.pop("tower", modality)  # recorded in the spec (part of the cache key), not a knob
    if tower != modality:
        raise ValueError(f"hf:{path}: option tower={tower!r} does not match modality {modality!r}")
    if modality == "text" and is_st_folder(path):  # e.g. a view exported by `crossalign export`
        return SentenceTransformerEncoder(path, **opts)
    return HFEncoder(path, modality, **opts)
