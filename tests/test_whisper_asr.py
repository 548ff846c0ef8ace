"""`audio:whisper-asr`: spoken clips land where their transcripts do, without any training."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from crossalign.encoders import build_encoder
from crossalign.encoders.whisper_asr import dedupe_repeats
from crossalign.modalities.audio import Audio, to_mono_16k

SENTENCES = [
    "a small red circle at the top left",
    "a large blue square at the bottom right",
    "a green star in the centre",
    "two yellow triangles on the left",
    "the weather is cold and windy today",
    "please open the window in the kitchen",
]


@pytest.fixture(scope="module")
def speech() -> list[Audio]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing (scripts/setup.sh installs it)")
    from crossalign.datasets.speech import speak

    return [Audio(to_mono_16k(*speak(t, "en-us", 150))) for t in SENTENCES]


@pytest.fixture(scope="module")
def asr():  # type: ignore[no-untyped-def]
    return build_encoder("audio:whisper-asr")


def _words(s: str) -> set[str]:
    return set("".join(ch if ch.isalnum() else " " for ch in s.lower()).split())


def test_transcripts_hold_the_spoken_words(asr, speech: list[Audio]) -> None:  # type: ignore[no-untyped-def]
    got = asr.transcribe(speech)
    recall = [len(_words(t) & _words(g)) / len(_words(t)) for t, g in zip(SENTENCES, got)]
    assert np.mean(recall) >= 0.7, list(zip(SENTENCES, got))


def test_speech_retrieves_its_sentence_untrained(asr, speech: list[Audio]) -> None:  # type: ignore[no-untyped-def]
    za = asr.encode(speech).numpy()
    zt = asr.text.encode(SENTENCES).numpy()
    assert za.shape == (len(SENTENCES), asr.spec.dim) == zt.shape
    s = zt @ za.T / np.outer(np.linalg.norm(zt, axis=1), np.linalg.norm(za, axis=1))
    assert (s.argmax(1) == np.arange(len(SENTENCES))).mean() >= 5 / 6


def test_spec_names_the_text_encoder_and_is_batch_invariant(asr, speech: list[Audio]) -> None:  # type: ignore[no-untyped-def]
    assert asr.spec.options == {"text": "text:minilm"} and asr.spec.modality == "audio"
    one = asr.encode(speech[:1]).numpy()[0]
    both = asr.encode(speech[:3]).numpy()[0]
    assert np.dot(one, both) / (np.linalg.norm(one) * np.linalg.norm(both)) > 0.999


def test_dedupe_repeats_drops_looped_sentences() -> None:
    assert dedupe_repeats(" A red circle. A red circle. A red circle.") == "A red circle."
    assert dedupe_repeats("One. Two! one.") == "One. Two!"


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        build_encoder("audio:whisper-base-asr", language="xx")
