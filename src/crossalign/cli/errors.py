"""The one error path of the `crossalign` command.

Every command runs inside `run`: a usage error (bad option, missing argument, `typer.BadParameter`)
prints click's usage message and exits 2; anything else that escapes a command is reported as one
line — the library's message names the file, row and column — and exits 1. `--debug` anywhere on
the command line (or CROSSALIGN_DEBUG=1) prints the traceback as well.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Sequence

import click

__all__ = ["run", "describe", "DATA_ERRORS"]

# What bad input raises in the library: the message is written for the user, so it is shown as is.
DATA_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, LookupError, RuntimeError)


def describe(e: BaseException) -> str:
    """One line for the user."""
    if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in str(e.strerror or ""):
        msg = f"file not found: {e.filename}" if not e.args or e.errno else str(e)
    elif isinstance(e, UnicodeDecodeError):
        msg = f"not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 4]!r}); save the file as UTF-8"
    elif isinstance(e, KeyError):
        msg = f"missing key {e.args[0]!r}" if e.args else "missing key"
    else:
        msg = str(e) or type(e).__name__
    if not isinstance(e, DATA_ERRORS):  # a bug rather than bad input: say what it is and where to look
        msg = f"{type(e).__name__}: {msg} (unexpected; run again with --debug for the traceback)"
    return " ".join(msg.split())  # one line


def run(app: Any, argv: Sequence[str] | None = None) -> int:
    """Run the typer `app` on `argv` (default: sys.argv[1:]) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("CROSSALIGN_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        rv = app(args=args, prog_name="crossalign", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:  # UsageError / BadParameter: exit 2, with the usage line
        e.show()
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("crossalign: interrupted", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the single place errors of every command end up
        if debug:
            traceback.print_exc()
        click.echo(f"crossalign: error: {describe(e)}", err=True)
        return 1
