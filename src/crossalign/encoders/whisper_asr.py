"""`audio:whisper-asr` / `audio:whisper-base-asr`: speech -> transcript (Whisper) -> text embedding.

A cascade encoder for recordings of speech: Whisper (CTranslate2, greedy decoding) writes what was
said and a text encoder embeds it, so a spoken clip lands in the same kind of space as its
transcript. That is what two collections with no pairs need (`align-unpaired` matches spaces by
their distance structure, and Whisper's own states carry the speaker's voice), and what a user with
recordings and reports wants searched by words. Prosody, voice and non-speech sound are lost: use
`audio:whisper-tiny` for those.

Clips are decoded from their own length (plus 0.5 s, in 0.5 s buckets) like `audio:whisper-tiny`
encodes them, about 5x faster than the 30 s window with the same words on short clips, and the
decoding budget is tied to the clip's duration, so a clip cannot loop for hundreds of tokens.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import torch

from crossalign.encoders.base import Encoder, EncoderSpec
from crossalign.encoders.whisper import BUCKET, MAX_SAMPLES, PAD_SAMPLES, WhisperEncoder
from crossalign.modalities.audio import TARGET_SR, Audio

__all__ = ["WhisperASREncoder", "dedupe_repeats", "whisper_asr", "whisper_base_asr"]

TOKENS_PER_SECOND = 6  # English speech is ~3 words/s (~4 tokens/s); the rest is headroom
SOT, TRANSCRIBE, NO_TIMESTAMPS = "<|startoftranscript|>", "<|transcribe|>", "<|notimestamps|>"


def dedupe_repeats(text: str) -> str:
    """Drop sentences that repeat an earlier one (greedy Whisper decoding can loop on short clips)."""
    seen: set[str] = set()
    keep = []
    for s in re.split(r"(?<=[.!?。！？])\s*", text.strip()):
        key = re.sub(r"\W+", " ", s.lower()).strip()
        if key and key not in seen:
            seen.add(key)
            keep.append(s)
    return " ".join(keep).strip()


class WhisperASREncoder(Encoder):
    """Transcribe with Whisper, embed the transcript with a text encoder: (D_text,) per clip."""

    def __init__(self, whisper: WhisperEncoder, text: Encoder, name: str, version: str, english_only: bool,
                 language: str = "auto"):
        super().__init__()
        import tokenizers

        self.whisper, self.text = whisper, text
        self.english_only = english_only
        self._tok = tokenizers.Tokenizer.from_file(str(whisper.model_dir / "tokenizer.json"))
        ids = {t: self._tok.token_to_id(t) for t in (SOT, TRANSCRIBE, NO_TIMESTAMPS)}
        if ids[SOT] is None or ids[NO_TIMESTAMPS] is None:
            raise RuntimeError(f"{name}: the Whisper tokenizer lacks {SOT} / {NO_TIMESTAMPS}")
        self._ids = ids
        self.language = language
        if language != "auto" and self._tok.token_to_id(f"<|{language}|>") is None:
            raise ValueError(f"{name}: unknown language {language!r} (a Whisper code such as 'en', 'zh', 'fr', or 'auto')")
        opts: dict[str, str] = {"text": text.spec.name}
        if not english_only:
            opts["language"] = language
        self.spec = EncoderSpec(name=name, modality="audio", version=version, output_shape=(text.spec.dim,),
                                trainable=False, options=opts)

    def _prompts(self, feats: np.ndarray) -> list[list[int]]:
        if self.english_only:  # tiny.en has no language or task tokens
            return [[self._ids[SOT], self._ids[NO_TIMESTAMPS]]] * len(feats)
        if self.language != "auto":
            tokens = [f"<|{self.language}|>"] * len(feats)
        else:  # detection is unreliable on clips of a second or two: name the language when you know it
            sv = self.whisper._ct2.StorageView.from_array(feats)
            tokens = [lang[0][0] for lang in self.whisper._model.detect_language(sv)]  # best (token, prob) per clip
        return [[self._ids[SOT], self._tok.token_to_id(t), self._ids[TRANSCRIBE], self._ids[NO_TIMESTAMPS]]
                for t in tokens]

    def transcribe(self, batch: Sequence[Audio]) -> list[str]:
        """One transcript per clip; clips of one 0.5 s length bucket share a decoder call."""
        wavs = [a.wav[:MAX_SAMPLES] for a in batch]
        lengths = [min(MAX_SAMPLES, -(-(len(w) + PAD_SAMPLES) // BUCKET) * BUCKET) for w in wavs]
        out: list[str] = [""] * len(wavs)
        for length in sorted(set(lengths)):
            idx = [i for i, n in enumerate(lengths) if n == length]
            feats = self.whisper._fe([wavs[i] for i in idx], sampling_rate=TARGET_SR, return_tensors="np",
                                     padding="max_length", max_length=length,
                                     truncation=True).input_features.astype(np.float32)  # (b, 80, L/160)
            feats = np.ascontiguousarray(feats)
            budget = int(TOKENS_PER_SECOND * length / TARGET_SR) + 8
            res = self.whisper._model.generate(self.whisper._ct2.StorageView.from_array(feats), self._prompts(feats),
                                               beam_size=1, max_length=budget)
            for i, r in zip(idx, res):
                out[i] = dedupe_repeats(self._tok.decode(r.sequences_ids[0]))
        return out

    def encode(self, batch: Sequence[Audio]) -> torch.Tensor:
        return self.text.encode(self.transcribe(batch))

    def forward(self, batch: Sequence[Audio]) -> torch.Tensor:
        return self.encode(batch)


def whisper_asr(text: str = "text:minilm", threads: int = 0) -> WhisperASREncoder:
    """English Whisper tiny.en transcripts, embedded by `text` (default MiniLM)."""
    from crossalign.encoders import build_encoder
    from crossalign.encoders.whisper import whisper_tiny

    return WhisperASREncoder(whisper_tiny(threads=threads), build_encoder(text), "audio:whisper-asr",
                             "tiny.en-ct2-int8-greedy/1", english_only=True)


def whisper_base_asr(text: str = "text:e5-small", language: str = "auto", threads: int = 0) -> WhisperASREncoder:
    """Multilingual Whisper base transcripts (`language`, or detected per clip), embedded by `text` (e5)."""
    from crossalign.encoders import build_encoder
    from crossalign.encoders.whisper import whisper_base

    return WhisperASREncoder(whisper_base(threads=threads), build_encoder(text), "audio:whisper-base-asr",
                             "base-ct2-int8-greedy/1", english_only=False, language=language)
