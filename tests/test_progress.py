"""Progress bars: live on a terminal, a few plain lines when the output is a log file."""

from __future__ import annotations

import io

import pytest

from crossalign.progress import progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_prints_a_few_whole_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSALIGN_PROGRESS_INTERVAL", "3600")
    log = io.StringIO()
    bar = progress_bar(total=500, desc="encode text", unit="item", file=log)
    for i in range(500):
        bar.update(1)
        bar.set_postfix(loss=f"{i:.3f}")  # the trainer does this every step: must not print each time
    bar.close()
    out = log.getvalue()
    lines = out.splitlines()
    assert "\r" not in out and len(lines) <= 3, lines
    assert lines[-1].startswith("encode text: 100%") and "500/500" in lines[-1]


def test_interval_elapses_prints_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSALIGN_PROGRESS_INTERVAL", "0")
    log = io.StringIO()
    bar = progress_bar(total=5, desc="x", file=log)
    for _ in range(5):
        bar.update(1)
    bar.close()
    assert len(log.getvalue().splitlines()) >= 5  # with no interval, every update is a line


def test_the_last_line_is_printed_once_with_the_final_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer sets the postfix after each update: the periodic line at 100 % would carry the
    previous epoch's figures beside the final one printed on close."""
    monkeypatch.setenv("CROSSALIGN_PROGRESS_INTERVAL", "0")
    log = io.StringIO()
    bar = progress_bar(total=3, desc="train", unit="epoch", file=log)
    for i in range(3):
        bar.update(1)
        bar.set_postfix(loss=i)
    bar.close()
    full = [line for line in log.getvalue().splitlines() if "3/3" in line]
    assert len(full) == 1 and "loss=2" in full[0], log.getvalue()


def test_terminal_gets_the_live_bar() -> None:
    tty = _Tty()
    bar = progress_bar(total=3, desc="live", file=tty)
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert "\r" in tty.getvalue()  # redrawn in place
