"""One progress bar for every long loop: live on a terminal, quiet and periodic in logs.

tqdm redraws with carriage returns; written to a file or a CI log that becomes one line per
refresh. When the bar's stream is not a terminal we print at most one plain line every
`CROSSALIGN_PROGRESS_INTERVAL` seconds (default 30) and a last one at the end.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["progress_bar", "is_interactive"]

DEFAULT_INTERVAL_S = 30.0


def is_interactive(stream: Any = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
                 leave: bool = True, file: Any = None, disable: bool = False) -> Any:
    """A tqdm bar; on a non-terminal stream: no redraws, one line per interval, ASCII only."""
    from tqdm import tqdm

    stream = file if file is not None else sys.stderr
    if is_interactive(stream):
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=stream, disable=disable)
    try:
        interval = float(os.environ.get("CROSSALIGN_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S))
    except ValueError:
        interval = DEFAULT_INTERVAL_S
    # mininterval/maxinterval bound how often tqdm may print; miniters=0 lets time alone decide;
    # ncols=0 drops the bar graphics so each periodic print is one short readable line.
    return _quiet_class()(total=total, desc=desc, unit=unit, initial=initial, leave=True,
                          file=_LineWriter(stream), mininterval=interval, maxinterval=max(interval, 1.0),
                          miniters=0, ascii=True, ncols=0, dynamic_ncols=False, disable=disable)


def _quiet_class() -> type:
    from tqdm import tqdm

    class QuietTqdm(tqdm):  # type: ignore[misc]
        """Postfix/description changes wait for the next periodic line instead of printing one each."""

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):  # type: ignore[no-untyped-def]
            super().set_postfix(ordered_dict, refresh=False, **kwargs)

        def set_postfix_str(self, s="", refresh=True):  # type: ignore[no-untyped-def]
            super().set_postfix_str(s, refresh=False)

        def set_description(self, desc=None, refresh=True):  # type: ignore[no-untyped-def]
            super().set_description(desc, refresh=False)

        # The last step's periodic line would show the previous step's postfix (it is set after the
        # update); the line printed on close carries the final one, so the periodic one is skipped.
        def display(self, msg=None, pos=None):  # type: ignore[no-untyped-def]
            if self.total and self.n >= self.total and not getattr(self, "_closing", False):
                return True
            return super().display(msg, pos)

        def close(self):  # type: ignore[no-untyped-def]
            self._closing = True
            super().close()

    return QuietTqdm


class _LineWriter:
    """Turns tqdm's carriage-return redraws into whole lines for logs."""

    def __init__(self, stream: Any):
        self.stream = stream

    def write(self, s: str) -> int:
        s = s.replace("\r", "").strip()
        if s:
            self.stream.write(s + "\n")
        return len(s)

    def flush(self) -> None:
        getattr(self.stream, "flush", lambda: None)()
