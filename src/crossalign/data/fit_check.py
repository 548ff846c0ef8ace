"""Column-level checks that `data check` and `train` share: does each column fit its encoder
(array rank, language, sample rate), and will the hash split keep every class in training?"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from crossalign.data.encoder_choice import (ENGLISH_ONLY, NON_LATIN_THRESHOLD, PROBE_ROWS, column_language,
                                            fits_rank, script_profile)
from crossalign.data.manifest import Manifest, view_modality
from crossalign.data.splits import has_splits

__all__ = ["Finding", "fit_findings", "split_warnings", "FIT_CHECKS"]

WHISPER_SR = 16000
SR_PROBE = 50


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" (training would fail) or "warning" (it would run, but worse than it could)
    column: str
    message: str

    def __str__(self) -> str:
        return f"column '{self.column}': {self.severity}: {self.message}"


def view_encoder(v: Any) -> str:
    from crossalign.data.features import view_encoder as encoder_of  # lazy: features imports this room's checks

    return encoder_of(v)


def _text(m: Manifest, v: Any) -> list[Finding]:
    col, enc, lang = v.column, view_encoder(v), column_language(v.column)
    if enc not in ENGLISH_ONLY:
        return []
    _, non_latin = script_profile([r.get(col) for r in m.rows[:PROBE_ROWS]])
    if non_latin >= NON_LATIN_THRESHOLD:
        return [Finding("warning", col, f"{enc} is English-only but {non_latin:.0%} of this column's "
                                        "letters are non-Latin script: use text:e5-small")]
    if lang not in (None, "en"):
        return [Finding("warning", col, f"{enc} is English-only but the column name says '{lang}': "
                                        "use text:e5-small")]
    return []


def _audio(m: Manifest, v: Any) -> list[Finding]:
    col, enc, lang = v.column, view_encoder(v), column_language(v.column)
    out = []
    if enc in ENGLISH_ONLY and lang not in (None, "en"):
        out.append(Finding("warning", col, f"{enc} is English-only (tiny.en) but the column name says "
                                           f"'{lang}': use audio:whisper-base"))
    return out + _sample_rates(m, col)


def _sensor(m: Manifest, v: Any) -> list[Finding]:
    shape = v.options.get("input_shape")
    if shape is None:
        from crossalign.data.extract import infer_sensor_shape

        try:
            shape = infer_sensor_shape(m, v.column)
        except ValueError:
            return []  # unreadable arrays are reported row by row already
    why = fits_rank(view_encoder(v), tuple(shape))
    return [Finding("error", v.column, why)] if why else []


# Modality -> its column-level check; modalities with nothing to check here have no entry.
FIT_CHECKS: dict[str, Callable[[Manifest, Any], list[Finding]]] = {"text": _text, "audio": _audio, "sensor": _sensor}


def fit_findings(m: Manifest, views: list[Any]) -> list[Finding]:
    """Views must already name their encoder (`resolve_views`)."""
    out: list[Finding] = []
    for v in views:
        check = FIT_CHECKS.get(view_modality(v))
        if check is not None:
            out.extend(check(m, v))
    return out


def _sample_rates(m: Manifest, col: str) -> list[Finding]:
    import soundfile as sf

    from crossalign.modalities.base import ReadError, resolve_path

    rates: Counter[int] = Counter()
    for r in m.rows[:SR_PROBE]:
        v = r.get(col)
        if not isinstance(v, str):
            continue
        try:
            rates[int(sf.info(str(resolve_path(v, m.base_dir))).samplerate)] += 1
        except (ReadError, RuntimeError, OSError, ValueError, TypeError):
            continue  # unreadable files are reported row by row already
    low = sorted(sr for sr in rates if sr < WHISPER_SR)
    if low:
        return [Finding("warning", col, f"recorded at {', '.join(f'{sr} Hz' for sr in low)}, below Whisper's "
                                        f"{WHISPER_SR} Hz: upsampled, with nothing above {low[0] // 2} Hz")]
    return []


def split_warnings(m: Manifest, seed: int = 0) -> list[str]:
    """Warn when there is no split column and each label sits in one group (e.g. group == label):
    the hash split keeps groups together, so whole classes would be missing from training."""
    if has_splits(m) or "group" not in m.columns or "label" not in m.columns:
        return []
    groups_of: dict[str, set[str]] = {}
    for r in m.rows:
        if r.get("label") is not None and r.get("group") is not None:
            groups_of.setdefault(str(r["label"]), set()).add(str(r["group"]))
    if len(groups_of) < 2 or any(len(g) > 1 for g in groups_of.values()):
        return []
    from crossalign.data.splits import split_of

    no_train = sum(split_of(next(iter(g)), seed) != "train" for g in groups_of.values())
    return [f"{m.path}: no split column and every label's rows share one group (group equals label): the hash "
            f"split keeps groups together, so {no_train} of {len(groups_of)} classes get no training rows. "
            "Add a `split` column, or make `group` finer than `label`."]
