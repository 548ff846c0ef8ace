"""`emoji`: emoji glyphs with their English and Chinese names and the English name spoken.

Four views per row: `image` (the glyph rendered from Debian's `fonts-noto-color-emoji`, colour
bitmaps through Pillow), `text` (English CLDR name), `text_zh` (Chinese CLDR name) — both from the
PyPI package `emoji` 2.16.0 — and `audio` (the English name spoken by espeak-ng in one of six
voices). Only fully-qualified emoji without skin-tone variants that the font draws as one glyph.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crossalign.datasets.sources import (Source, deb_version, extract_deb, fetch_deb, fetch_wheel, read_from_wheel,
                                     write_source_json)

__all__ = ["make_emoji", "emoji_name"]

PACKAGE, VERSION = "emoji", "2.16.0"
FONT_DEB, FONT_FILE = "fonts-noto-color-emoji", "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
FONT_SIZE, CANVAS, SIZE = 109, 160, 96  # the bitmap strike is 109 px; saved at 96 px


def emoji_name(cldr: str) -> str:
    """`:1st_place_medal:` -> `1st place medal`; `:金牌:` -> `金牌`."""
    return cldr.strip(":").replace("_", " ").strip()


def _render(font: Any, glyph: str) -> "Image.Image | None":  # noqa: F821
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (CANVAS, CANVAS), (255, 255, 255, 0))
    ImageDraw.Draw(im).text((CANVAS // 2, CANVAS // 2), glyph, font=font, embedded_color=True, anchor="mm")
    box = im.getbbox()
    if box is None:  # not in this font version
        return None
    w, h = box[2] - box[0], box[3] - box[1]
    if w > 1.4 * h or w > FONT_SIZE * 1.5:  # a sequence the font lacks, drawn as several glyphs
        return None
    bg = Image.new("RGB", im.size, (255, 255, 255))
    bg.paste(im, mask=im.split()[3])
    return bg.resize((SIZE, SIZE), Image.LANCZOS)


def make_emoji(out: Path, n: int = 5000, seed: int = 0, audio: bool = True,
               progress: Callable[[int], Any] | None = None, **_: Any) -> list[dict[str, Any]]:
    from PIL import ImageFont

    from crossalign.data.splits import split_of
    from crossalign.datasets.speech import VOICES, speak_many

    wheel = fetch_wheel(PACKAGE, VERSION)
    deb = fetch_deb(FONT_DEB)
    font = ImageFont.truetype(str(extract_deb(deb, FONT_FILE)), FONT_SIZE)
    en = json.loads(read_from_wheel(wheel, "emoji/unicode_codes/emoji.json"))
    zh = json.loads(read_from_wheel(wheel, "emoji/unicode_codes/emoji_zh.json"))
    cands = [g for g, v in en.items() if v.get("status") == 2 and "skin_tone" not in v["en"] and g in zh]
    order = np.random.default_rng(seed).permutation(len(cands))  # a seeded subset when n < all
    (out / "images").mkdir(parents=True, exist_ok=True)
    if audio:
        (out / "audio").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    jobs = []
    for k in order:
        if len(rows) >= n:
            break
        glyph = cands[int(k)]
        img = _render(font, glyph)
        if img is None:
            continue
        code = "-".join(f"{ord(c):x}" for c in glyph if ord(c) != 0xFE0F)
        name = emoji_name(en[glyph]["en"])
        item_id = f"emoji-{code}"
        img.save(out / f"images/{item_id}.png")
        rng = random.Random(f"emoji:{seed}:{code}")
        voice, speed = rng.choice(VOICES), rng.randint(130, 190)
        group = name.lower()
        row = {"id": item_id, "image": f"images/{item_id}.png", "text": name, "text_zh": emoji_name(zh[glyph]),
               "group": group, "split": split_of(group, seed), "emoji": glyph}
        if audio:
            row["audio"] = f"audio/{item_id}.flac"
            jobs.append((name, voice, speed, out / row["audio"]))
        rows.append(row)
        if progress:
            progress(1)
    if audio:
        speak_many(jobs)
    rows.sort(key=lambda r: r["id"])  # file order independent of the subset permutation
    write_source_json(out, [Source("pypi", PACKAGE, VERSION, "BSD-3-Clause (names: Unicode CLDR, Unicode licence)",
                                   wheel.name, ("emoji/unicode_codes/emoji.json", "emoji/unicode_codes/emoji_zh.json")),
                            Source("debian", FONT_DEB, deb_version(deb), "OFL-1.1", deb.name, (FONT_FILE,))],
                      dataset="emoji", rows=len(rows), seed=seed, audio="espeak-ng, English name, six voices",
                      selection="fully-qualified emoji without skin tones, drawn as one glyph by the font",
                      split="80/10/10 by a hash of the English name")
    return rows
