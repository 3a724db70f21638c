"""Bounded reads of local image sources: a size cap and a wall-clock cap, and only regular files.

A CSV from someone else may name `/dev/zero`, a named pipe, a directory or a multi-GB video as
an image url. Reading such a path whole would take the worker's memory (an endless device) or
block forever (a FIFO without a writer). So the path is `stat`ed first and anything but a
regular file is refused as `not_a_file` before it is opened; the open itself uses `O_NONBLOCK`
(and the descriptor is checked again with `fstat`), so a file swapped for a FIFO between the
two calls cannot block either. The read stops at `max_bytes + 1` bytes (`too_large`) and at a
wall-clock deadline (`timeout`), checked between chunks.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Optional

from pipelines.images.errors import RowFailure

_CHUNK = 1 << 20
_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def irregular_kind(mode: int) -> Optional[str]:
    """What a file of this `st_mode` is ("a named pipe (FIFO)", ...), None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _require_regular(mode: int, path: str) -> None:
    kind = irregular_kind(mode)
    if kind:
        raise RowFailure("not_a_file", f"{path} is {kind}")


def read_local(path: str, max_bytes: int, timeout_s: float) -> bytes:
    """The bytes of the regular file at `path`, at most `max_bytes`, read within `timeout_s`.

    Raises `RowFailure`: `not_found`, `not_a_file`, `too_large`, `timeout` or `fetch_error`.
    """
    deadline = time.monotonic() + timeout_s
    try:
        st = os.stat(path)  # follows symlinks: a link to /dev/zero is refused too
    except FileNotFoundError as e:
        raise RowFailure("not_found", path) from e
    except OSError as e:  # permission on a parent folder, a name too long, ...
        raise RowFailure("fetch_error", f"{type(e).__name__}: {path}") from e
    _require_regular(st.st_mode, path)
    if st.st_size > max_bytes:
        raise RowFailure("too_large", f"file of {st.st_size} bytes > {max_bytes}")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as e:
        raise RowFailure("not_found", path) from e
    except OSError as e:
        raise RowFailure("fetch_error", f"{type(e).__name__}: {path}") from e
    try:
        _require_regular(os.fstat(fd).st_mode, path)
        chunks, total = [], 0
        while True:
            if time.monotonic() > deadline:
                raise RowFailure("timeout", f"reading {path} took over {timeout_s:.0f} s")
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - total))
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > max_bytes:  # the file grew while being read
                raise RowFailure("too_large", f"file over {max_bytes} bytes")
            chunks.append(chunk)
    except OSError as e:
        raise RowFailure("fetch_error", f"{type(e).__name__}: {path}") from e
    finally:
        os.close(fd)
