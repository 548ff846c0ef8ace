"""The `crossalign` command: a thin typed layer over the library, one small module per group."""

from __future__ import annotations

import logging
import os
import sys

import typer

from crossalign.cli import data as _data
from crossalign.cli import encode as _encode

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Align paired data of any modalities into one space, measure it, search it. "
                       "Errors are one line (exit 1; 2 for usage errors): add --debug anywhere for "
                       "the traceback.")
app.add_typer(_data.app, name="data")
app.command("encode")(_encode.encode)

# Command groups that load heavier parts register themselves here as they exist.
for _mod in ("train", "evaluate", "demo", "search", "bridge", "task", "scale", "federate", "export", "explain",
             "report", "semi"):
    try:
        __import__(f"crossalign.cli.{_mod}", fromlist=["register"]).register(app)
    except ModuleNotFoundError as e:  # a group not built yet; anything else is a real error
        if e.name != f"crossalign.cli.{_mod}":
            raise


def main() -> None:
    import warnings

    # Library deprecation notices (transformers, torch.distributed) are for developers, not CLI users.
    warnings.filterwarnings("ignore", category=FutureWarning)
    # transformers' "Loading weights 103/103" bar is noise on a terminal and floods logs; it reads
    # this at import, so set it before any encoder loads (a user's own setting wins).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from crossalign.cli.errors import run

    raise SystemExit(run(app))
