"""Zero-shot prompts: one text per class label, embedded by the run's text view.

Given by the user (`--prompt "a photo of {}"`, or `--prompt-map FILE` with a text per label), or
derived from the training text so the prompts look like what the text head was trained on:
1. if many training texts are the label inside the same wording ("a photo of a cat" for label
   "cat"), that wording becomes the template;
2. otherwise each class gets its most common training text.
Never the bare `"a {}" + label` of a label that may be a code ("1", "gun-draw").
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = ["Prompts", "derive_prompts", "load_prompts", "prompts_for"]

TEMPLATE_SHARE = 0.3  # a template must fit this share of the training rows to be used


@dataclass
class Prompts:
    template: str | None = None  # "a photo of {}"
    mapping: dict[str, str] = field(default_factory=dict)  # label -> text; wins over the template


def load_prompts(template: str | None = None, mapping_file: str | Path | None = None) -> Prompts | None:
    """From CLI options; None when neither is given (then prompts are derived)."""
    if template is None and mapping_file is None:
        return None
    if template is not None and "{}" not in template:
        raise ValueError(f"--prompt {template!r}: put {{}} where the label goes, e.g. 'a photo of {{}}'")
    mapping: dict[str, str] = {}
    if mapping_file is not None:
        p = Path(mapping_file)
        try:
            raw = p.read_text(encoding="utf-8-sig")
        except OSError as e:
            raise ValueError(f"{p}: cannot read the prompt map: {e}") from e
        if p.suffix.lower() == ".json":
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}: invalid JSON ({e.msg}, line {e.lineno})") from e
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise ValueError(f"{p}: expected a JSON object {{label: prompt text}}")
            mapping = {str(k): v for k, v in data.items()}
        else:
            rows = list(csv.DictReader(raw.splitlines()))
            if not rows or not {"label", "text"} <= set(rows[0]):
                raise ValueError(f"{p}: expected a CSV with a header 'label,text'")
            for n, r in enumerate(rows, 1):
                if not r.get("label") or not r.get("text"):
                    raise ValueError(f"{p}: row {n}: empty label or text")
                mapping[r["label"]] = r["text"]
    return Prompts(template, mapping)


def derive_prompts(texts: Sequence[str | None], labels: Sequence[str | None],
                   classes: Sequence[str]) -> tuple[dict[str, str], str]:
    """-> ({class: prompt}, how they were made) from training texts and their labels."""
    pairs = [(t, str(lbl)) for t, lbl in zip(texts, labels) if isinstance(t, str) and t.strip() and lbl is not None]
    templates: Counter[str] = Counter()
    for t, lbl in pairs:
        m = re.search(re.escape(lbl), t, flags=re.IGNORECASE)
        if m and lbl.strip():
            templates[t[:m.start()] + "{}" + t[m.end():]] += 1
    if templates:
        tpl, count = templates.most_common(1)[0]
        if count >= max(2, TEMPLATE_SHARE * len(pairs)):
            return {c: tpl.replace("{}", c) for c in classes}, f"template {tpl!r} ({count} training texts)"
    by_class: dict[str, Counter[str]] = {}
    for t, lbl in pairs:
        by_class.setdefault(lbl, Counter())[t] += 1
    out = {c: (by_class[c].most_common(1)[0][0] if c in by_class else c) for c in classes}
    return out, "each class's most common training text"


def prompts_for(classes: Sequence[str], prompts: Prompts | None, train_texts: Sequence[str | None],
                train_labels: Sequence[str | None]) -> tuple[list[str], str]:
    """The prompt list for `classes` (in order) and a sentence saying where it came from."""
    if prompts is not None and prompts.mapping:
        missing = [c for c in classes if c not in prompts.mapping]
        if missing and prompts.template is None:
            raise ValueError(f"prompt map has no text for label(s) {missing[:5]}")
        tpl = prompts.template or "{}"
        return [prompts.mapping.get(c) or tpl.replace("{}", c) for c in classes], "prompt map"
    if prompts is not None and prompts.template:
        return [prompts.template.replace("{}", c) for c in classes], f"template {prompts.template!r}"
    derived, how = derive_prompts(train_texts, train_labels, classes)
    return [derived[c] for c in classes], how
