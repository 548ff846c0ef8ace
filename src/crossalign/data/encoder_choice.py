"""Which encoder each manifest column gets, and why — by column name *and* content.

Order: an encoder the user named (`--encoder`, a config file) > the one `crossalign encode` last
cached for this manifest's column > a default that fits the content:
- text: English MiniLM, unless the values are mostly non-Latin script (Chinese, Japanese, Korean,
  Cyrillic, Arabic, ...) or the column name carries a non-English language (`text_fr`): then
  multilingual e5. When a run has text in several languages, its English text views get e5 too
  (`share_multilingual`): the two languages then start in one space, where a word and its
  translation are already neighbours, so few pairs go much further (cedict at 10 % pairs: test
  R@1 0.637 vs 0.428, benchmarks/results/label_efficiency_cedict_e5.json);
- audio: Whisper tiny.en, unless the column name carries a non-English language (`audio_zh`):
  then multilingual Whisper base;
- sensor: a tower that fits the arrays' rank (1-D series -> conv1d, 2-D maps and (C, H, W) stacks
  -> conv2d, anything else -> MLP);
- image: EfficientNet-Lite0 (the CLI adds a 3x3 grid and colour statistics, `CLI_VIEW_OPTIONS`).
The choice and its reason are written into each view (`ViewSpec.why`), so a run folder records it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from crossalign.data.manifest import Manifest, view_modality
from crossalign.encoders import DEFAULT_ENCODERS, default_sensor_tower, encoder_facts

__all__ = ["choose_default", "resolve_view", "resolve_views", "column_language", "script_profile",
           "record_encoded", "recorded_encoders", "ENGLISH_ONLY", "fits_rank", "share_multilingual"]

# ISO 639-1 codes (and a few 639-2/3 ones people use for Chinese varieties) read as a column suffix.
LANGUAGES = frozenset(
    "af am ar as az be bg bn bo br bs ca cs cy da de el en eo es et eu fa fi fo fr fy ga gl gu ha he hi hr ht "
    "hu hy id is it ja jv ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps "
    "pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh zu "
    "cmn yue zho jpn kor fra deu spa rus ara por ita nld".split())
ENGLISH_ONLY = frozenset({"text:minilm", "audio:whisper-tiny"})
MULTILINGUAL = {"text": "text:e5-small", "audio": "audio:whisper-base"}
ENGLISH_DEFAULT_WHY = "English text, the default"
NON_LATIN_THRESHOLD = 0.3  # share of letters outside Latin script that makes a column "not English"
PROBE_ROWS = 200


def column_language(column: str) -> str | None:
    """`text_zh` -> "zh", `audio_pt_br` -> "pt", `text_neg` -> None (not a language code)."""
    parts = column.lower().replace("-", "_").split("_")[1:]
    return parts[0] if parts and parts[0] in LANGUAGES else None


def script_profile(values: list[Any]) -> tuple[float, float]:
    """(share of letters that are CJK, share of letters outside the Latin script) over the values."""
    letters = cjk = non_latin = 0
    for v in values:
        if not isinstance(v, str):
            continue
        for ch in v:
            if not ch.isalpha():
                continue
            letters += 1
            o = ord(ch)
            if o > 0x24F:  # beyond Latin Extended-B
                non_latin += 1
                if 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF:
                    cjk += 1
    return (cjk / letters, non_latin / letters) if letters else (0.0, 0.0)


def _sensor_rank(manifest: Manifest, column: str, modality: str = "sensor") -> tuple[int, ...]:
    from crossalign.data.extract import infer_sensor_shape

    return infer_sensor_shape(manifest, column, modality)


def fits_rank(encoder: str, shape: tuple[int, ...]) -> str | None:
    """None if the encoder takes arrays of this shape (its `EncoderFacts.input_ranks`), else why not."""
    rank = len(shape)
    ok = encoder_facts(encoder).input_ranks
    if ok is None or rank in ok:
        return None
    hint = default_sensor_tower(shape)
    want = " or ".join(f"{r}-D" for r in ok)
    return f"{encoder} takes {want} arrays but this column's arrays are {rank}-D {shape}: use {hint}"


def choose_default(column: str, modality: str, manifest: Manifest | None) -> tuple[str, dict[str, Any], str]:
    """-> (encoder name, options, reason) for a column nobody chose an encoder for."""
    lang = column_language(column)
    if modality == "text":
        values = [r.get(column) for r in manifest.rows[:PROBE_ROWS]] if manifest is not None else []
        cjk, non_latin = script_profile(values)
        if non_latin >= NON_LATIN_THRESHOLD:
            kind = "CJK" if cjk >= 0.5 * non_latin else "non-Latin"
            return MULTILINGUAL["text"], {}, f"{non_latin:.0%} of its letters are {kind} script: multilingual encoder"
        if lang not in (None, "en"):
            return MULTILINGUAL["text"], {}, f"column name says language '{lang}': multilingual encoder"
        return "text:minilm", {}, ENGLISH_DEFAULT_WHY
    if modality == "audio":
        if lang not in (None, "en"):
            return MULTILINGUAL["audio"], {}, f"column name says language '{lang}': multilingual Whisper"
        return "audio:whisper-tiny", {}, "English speech, the default (name other languages audio_xx)"
    if modality == "sensor":
        if manifest is None:
            return default_sensor_tower(None), {}, "no data to look at, the default"
        shape = _sensor_rank(manifest, column)
        name = default_sensor_tower(shape)
        kind = {"sensor:conv1d": "1-D convolutional", "sensor:conv2d": "2-D convolutional"}.get(name, "MLP")
        return name, {}, f"{len(shape)}-D arrays {shape}: {kind} tower"
    if modality == "image":
        return "image:efficientnet-lite0", {}, "default image tower"
    if modality in DEFAULT_ENCODERS:  # a modality registered later: the default it registered
        return DEFAULT_ENCODERS[modality], {}, f"the default {modality} encoder"
    raise ValueError(f"column '{column}': no default encoder for modality '{modality}'")


def _record_path(manifest: Manifest) -> Path | None:
    if manifest.path is None:
        return None
    from crossalign.paths import cache_root

    key = hashlib.sha1(str(Path(manifest.path).resolve()).encode()).hexdigest()[:16]
    return cache_root() / "encode-records" / f"{key}.json"


def recorded_encoders(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """{column: {"encoder", "options"}} that `crossalign encode` last used on this manifest."""
    p = _record_path(manifest)
    if p is None or not p.exists():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged record only loses the hint, never the run
    return data.get("columns", {}) if isinstance(data, dict) else {}


def record_encoded(manifest: Manifest, column: str, encoder: str, options: dict[str, Any]) -> None:
    p = _record_path(manifest)
    if p is None:
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    cols = recorded_encoders(manifest)
    cols[column] = {"encoder": encoder, "options": {k: v for k, v in options.items() if k != "input_shape"}}
    tmp = p.with_suffix(f".{hashlib.sha1(column.encode()).hexdigest()[:6]}.tmp")
    tmp.write_text(json.dumps({"manifest": str(Path(manifest.path).resolve()), "columns": cols}, indent=2))
    tmp.replace(p)


def resolve_view(view: Any, manifest: Manifest | None, recorded: dict[str, dict[str, Any]] | None = None) -> str:
    """Fill `view.encoder` (and default options) in place when unset; record why in `view.why`.
    Raises ValueError when a named sensor tower cannot take the column's arrays."""
    modality = view_modality(view)
    if view.encoder is None:
        rec = (recorded if recorded is not None else (recorded_encoders(manifest) if manifest else {}))
        hit = rec.get(view.column)
        if hit and isinstance(hit.get("encoder"), str):
            view.encoder = hit["encoder"]
            view.options = {**(hit.get("options") or {}), **view.options}
            view.why = "as cached by `crossalign encode` for this manifest"
        else:
            name, opts, why = choose_default(view.column, modality, manifest)
            view.encoder, view.options, view.why = name, {**opts, **view.options}, why
    elif not getattr(view, "why", ""):
        view.why = "given"
    if manifest is not None and encoder_facts(view.encoder).input_ranks and view.column in manifest.columns:
        shape = view.options.get("input_shape") or _sensor_rank(manifest, view.column, modality)
        problem = fits_rank(view.encoder, tuple(shape))
        if problem:
            raise ValueError(f"column '{view.column}': {problem}")
    return view.why


def _not_english(column: str, manifest: Manifest | None) -> bool:
    if column_language(column) not in (None, "en"):
        return True
    if manifest is None or column not in manifest.columns:
        return False
    return script_profile([r.get(column) for r in manifest.rows[:PROBE_ROWS]])[1] >= NON_LATIN_THRESHOLD


def share_multilingual(views: list[Any], manifest: Manifest | list[Manifest | None] | None) -> None:
    """Text views in several languages share one multilingual encoder: an English text view whose
    encoder was only the English default switches to the multilingual one when a text view of the
    run in another language has it. A view someone chose (`--encoder`, a config, `encode`'s record)
    is left alone. `manifest`: the views' manifest, or one per view (collections read apart)."""
    ms = manifest if isinstance(manifest, list) else [manifest] * len(views)
    text = [(v, m) for v, m in zip(views, ms, strict=True) if view_modality(v) == "text"]
    other = [v.column for v, m in text if v.encoder == MULTILINGUAL["text"] and _not_english(v.column, m)]
    if not other:
        return
    for v, _ in text:
        if v.encoder == "text:minilm" and v.why == ENGLISH_DEFAULT_WHY and not v.options:
            v.encoder = MULTILINGUAL["text"]
            v.why = (f"English text beside {', '.join(other)} in another language: one multilingual encoder "
                     f"for all, so translations start as neighbours (override: --encoder {v.column}=text:minilm)")


def resolve_views(views: list[Any], manifest: Manifest) -> list[str]:
    """Resolve every view (text in several languages shares one encoder, `share_multilingual`);
    -> one line per view: `column: encoder {options} (why)`."""
    rec = recorded_encoders(manifest)
    for v in views:
        resolve_view(v, manifest, rec)
    share_multilingual(views, manifest)
    lines = []
    for v in views:
        opts = {k: o for k, o in v.options.items() if k != "input_shape"}
        lines.append(f"{v.column}: {v.encoder}{' ' + json.dumps(opts) if opts else ''} ({v.why})")
    return lines
