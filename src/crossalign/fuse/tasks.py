"""Task rows a user brings (manifest columns `label` or `tags`); the built-in scenes tasks live in
`crossalign.datasets.scenes.tasks`."""

from __future__ import annotations

from crossalign.data.manifest import Manifest

__all__ = ["TAG_OUTSIDE", "validate_user_rows"]

TAG_OUTSIDE = "O"  # the tag of a word outside every entity


def validate_user_rows(manifest: Manifest, kind: str, text_column: str = "text") -> None:
    """User tasks: `label` per row (classify) or `tags` aligned to `text.split()` (tag); clear errors."""
    where = manifest.path or "manifest"
    for i, r in enumerate(manifest.rows):
        n = manifest.row_number(i)
        if kind == "classify":
            if r.get("label") in (None, ""):
                raise ValueError(f"{where}: row {n}: field 'label' is empty (classification tasks need one per row)")
            continue
        tags, text = r.get("tags"), r.get(text_column)
        if isinstance(tags, str):  # CSV cells: space-separated tags
            tags = tags.split()
            r["tags"] = tags
        if not isinstance(tags, list):
            raise ValueError(f"{where}: row {n}: field 'tags' must be a list of per-word tags")
        if not isinstance(text, str) or len(text.split()) != len(tags):
            got = len(text.split()) if isinstance(text, str) else 0
            raise ValueError(f"{where}: row {n}: field 'tags' has {len(tags)} tags but '{text_column}' has "
                             f"{got} whitespace words")
