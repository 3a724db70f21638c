"""What the command-line stages print: their own messages and progress, not library start-up noise.

- TensorFlow 2.21's shared libraries print start-up lines (absl's "All log messages before
  absl::InitializeLog()", the oneDNN notice, the CPU feature guard) to file descriptor 2 while
  `import tensorflow` runs, some whatever TF_CPP_MIN_LOG_LEVEL says. `setup(tensorflow=True)`
  sets TF_CPP_MIN_LOG_LEVEL (unless the caller did), then runs that import with descriptor 2 sent
  to a temporary file, and passes on every captured line that is not a known start-up notice, so
  a real error still shows.
- absl's `I1128 06:25:16.355108 139979583781760 predict.py:116]` prefix becomes nothing for INFO
  and `WARNING: ` / `ERROR: ` for worse.
With `--verbosity=1` (or more) `setup` changes nothing: every line and prefix comes back.

`Progress` counts work (rows, images, queries) with a rate and an ETA: a live tqdm bar on a
terminal, else one log line every `every_s` seconds and one at the end, so logs stay short.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from typing import Optional

from tqdm import tqdm

STARTUP_NOTICES = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cu",  # cuDNN / cuFFT / cuBLAS factories on a machine without CUDA
    "computation placer already registered",
    "Could not find cuda drivers",
    "TF-TRT Warning",
)
PROGRESS_EVERY_S = 30.0

_LOG = logging.getLogger("progress")


class _PlainFormatter(logging.Formatter):
    """INFO as the bare message; WARNING and worse with their level name in front."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname}: {message}"


def _import_tensorflow_quietly() -> None:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401 - imported here so that its start-up lines are caught
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", errors="replace")
    kept = [line for line in text.splitlines() if line.strip() and not any(n in line for n in STARTUP_NOTICES)]
    if kept:
        print("\n".join(kept), file=sys.stderr, flush=True)


def plain_logging() -> None:
    """Plain messages on the root logger's handlers (for CLIs on Python logging, not absl)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_PlainFormatter("%(message)s"))


def setup(verbosity: int = 0, tensorflow: bool = False) -> None:
    """Quiet console for a CLI, called first thing in its `main` (after flag parsing, before
    TensorFlow is imported): plain absl messages, and with `tensorflow` the import done quietly."""
    if verbosity >= 1:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().setFormatter(_PlainFormatter("%(message)s"))
    if tensorflow and "tensorflow" not in sys.modules:
        _import_tensorflow_quietly()


def meter(desc: str, n: int, total: Optional[int], elapsed_s: float, unit: str = "it", initial: int = 0,
          note: Optional[str] = None) -> str:
    """`desc:  60% 1200/2000 [00:10<00:06, 120.00row/s, note]`: count, rate and ETA as one log line;
    the first `initial` of `n` were done before (they count, but not in the rate)."""
    return tqdm.format_meter(n, total, elapsed_s, unit=unit, prefix=desc, ncols=0, initial=initial, postfix=note)


class Progress:
    """`with Progress("embedded", total, "img") as p: ... p.update(n)`; `total` may be None (no ETA).
    `skip(n)` counts work a previous run did (out of the rate and ETA); `note(text)` shows beside it."""

    def __init__(self, desc: str, total: Optional[int] = None, unit: str = "it", every_s: float = PROGRESS_EVERY_S,
                 live: Optional[bool] = None) -> None:
        self.desc, self.total, self.unit, self.every_s = desc, total, unit, every_s
        self.n = self.initial = 0
        self._note: Optional[str] = None
        self._start = self._last = time.monotonic()
        live = sys.stderr.isatty() if live is None else live
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=True) if live else None

    def line(self) -> str:
        """The count, rate and ETA as one line (tqdm's meter text)."""
        return meter(self.desc, self.n, self.total, time.monotonic() - self._start, self.unit, self.initial,
                     self._note)

    def skip(self, n: int) -> None:
        """Count `n` done before this run (resumed work): shown, but not in the rate or the ETA."""
        self.n += n
        self.initial += n
        if self._bar is not None:
            self._bar.n = self._bar.initial = self._bar.last_print_n = self.n  # not in its rate either
            self._bar.refresh()

    def note(self, text: str) -> None:
        """Text shown after the rate (e.g. "3/8 shards"), from the next line or refresh on."""
        self._note = text
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            _LOG.info("%s", self.line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            _LOG.info("%s", self.line())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
