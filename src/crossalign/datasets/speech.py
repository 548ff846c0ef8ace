"""Offline speech with Debian's espeak-ng (22.05 kHz mono), stored as FLAC."""

from __future__ import annotations

import io
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

__all__ = ["speak", "speak_many", "VOICES", "espeak_available"]

VOICES = ("en-us", "en", "en-us+f2", "en+m3", "en-us+f4", "en+m7")


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str = "en-us", speed: int = 160, lang_voice: str | None = None) -> tuple[np.ndarray, int]:
    """-> (waveform float32, sample rate). Raises RuntimeError when espeak-ng is missing or fails."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install -y espeak-ng (scripts/setup.sh does it)")
    proc = subprocess.run([exe, "--stdout", "-v", lang_voice or voice, "-s", str(speed), text],
                          capture_output=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"espeak-ng failed on {text!r}: {proc.stderr.decode(errors='replace')[:200]}")
    wav, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return wav, sr


def speak_many(jobs: Sequence[tuple[str, str, int, Path]], workers: int = 2) -> None:
    """jobs: (text, voice, speed, out_path .flac). espeak runs as subprocesses, so threads overlap."""

    def one(job: tuple[str, str, int, Path]) -> None:
        text, voice, speed, out = job
        wav, sr = speak(text, voice, speed)
        sf.write(out, wav, sr, format="FLAC")

    with ThreadPoolExecutor(max_workers=workers) as ex:
        list(ex.map(one, jobs))
