"""One way for every command line to report an expected error: `<cli>: error: <file>: <problem>`.

Bad input, bad flags and damaged files are the user's to fix, so they end the program with that
one line on stderr and exit status 1, not with a Python traceback. Anything else is a bug and keeps
its traceback. `--traceback` (or `LANDMARKS_TRACEBACK=1` in the environment, which the demo's
stages inherit) shows the traceback of expected errors too.

TF-free and dependency-free, so `pipelines.preprocess` (argparse) and the absl programs (trainer,
indexer, demo, pipelines.synthetic) share it:

    app.run(cli_errors.absl_main("indexer.build", main))     # absl programs
    cli_errors.run_argv("pipelines.preprocess", run)         # argparse programs
"""

from __future__ import annotations

import os
import sys
from typing import Callable, List, NoReturn, Optional, Sequence

TRACEBACK_FLAG = "--traceback"
TRACEBACK_ENV = "LANDMARKS_TRACEBACK"


class InputError(Exception):
    """An expected error (bad input, bad flag, damaged file); its message names the file or flag
    and says what is wrong, on one line."""


class SettingsError(InputError, ValueError):
    """A flag value or combination that cannot work (still a ValueError for library callers)."""


# OSErrors that name a path the user gave; other OSErrors (disk full, ...) keep their traceback.
_EXPECTED_OS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
EXPECTED = (InputError, *_EXPECTED_OS)


def one_line(err: BaseException) -> str:
    """The error's message on one line, naming the file of an OSError first."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " / ".join(lines) or type(err).__name__


def fail(prog: str, err: BaseException) -> NoReturn:
    """Print `<prog>: error: <message>` on stderr and exit with status 1."""
    print(f"{prog}: error: {one_line(err)}", file=sys.stderr, flush=True)
    sys.exit(1)


def _traceback_from_env() -> bool:
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def guard(prog: str, fn: Callable, show_traceback: Callable[[], bool] = _traceback_from_env) -> Callable:
    """`fn` wrapped so that an expected error ends the program with one line (see module doc)."""

    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EXPECTED as err:
            if show_traceback():
                raise
            fail(prog, err)

    return wrapped


def absl_main(prog: str, main: Callable) -> Callable:
    """`main` for `absl.app.run`, with a `--traceback` flag, reporting expected errors in one line."""
    from absl import flags  # lazy: pipelines/ does not need absl

    if "traceback" not in flags.FLAGS:
        flags.DEFINE_bool("traceback", False, "show the Python traceback of expected errors too")
    return guard(prog, main, lambda: flags.FLAGS.traceback or _traceback_from_env())


def run_argv(prog: str, fn: Callable[[Sequence[str]], object], argv: Optional[List[str]] = None) -> object:
    """Call `fn(argv)` (default: the command line without the program name) for programs that parse
    their own arguments; `--traceback` is taken out of the arguments first."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = TRACEBACK_FLAG in args
    args = [a for a in args if a != TRACEBACK_FLAG]
    return guard(prog, fn, lambda: verbose or _traceback_from_env())(args)
