"""The one place where numeric flags, API arguments and output folders are checked.

Every command line (`trainer.train`, `indexer.build`, `indexer.predict`, `indexer.evaluate`) and the
Python API (`indexer.api.Recognizer`) validate their values through these functions, so a NaN, an
infinity or an out-of-range number is refused the same way everywhere: a `SettingsError` (an
`InputError`, so one line on the command line) naming the flag and the range it needs. A plain
`x < 0` test lets NaN through (every comparison with NaN is False); these never do.

TF-free and dependency-free, like `cli_errors`.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Optional

from pipelines.cli.cli_errors import InputError, SettingsError


def _range(minimum: Optional[float], maximum: Optional[float], above: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if above else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    return " and ".join(parts)


def number(name: str, value, minimum: Optional[float] = None, maximum: Optional[float] = None,
           above: bool = False) -> float:
    """`value` as a float when it is finite and within [minimum, maximum] (`above`: > minimum);
    else SettingsError naming `name` (e.g. `--aqe_alpha`)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={value!r}: expected a number") from None
    ok = math.isfinite(x) and (minimum is None or (x > minimum if above else x >= minimum)) and (
        maximum is None or x <= maximum)
    if not ok:
        bounds = _range(minimum, maximum, above)
        raise SettingsError(f"{name}={value}: must be a finite number{' ' + bounds if bounds else ''}")
    return x


def integer(name: str, value, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    """`value` when it is an integer within [minimum, maximum]; else SettingsError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{name}={value!r}: expected an integer")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise SettingsError(f"{name}={value}: must be an integer {_range(minimum, maximum, False)}")
    return value


def output_dir(path: str, name: str = "--output_dir") -> str:
    """Create the local folder `path` (with its parents) and check that a file can be written
    into it; SettingsError when it is an existing file, lies under one, or is not writable. Remote paths
    (`gs://...`) are left to their storage client."""
    if "://" in path:
        return path
    if os.path.exists(path) and not os.path.isdir(path):
        raise SettingsError(f"{name}={path}: exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise SettingsError(f"{name}={path}: cannot create it ({err.strerror or err})") from None
    try:  # a real write: permission bits, a read-only mount, and root's exemption all answer here
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise SettingsError(f"{name}={path}: cannot write into it ({err.strerror or err})") from None
    return path


__all__ = ["InputError", "SettingsError", "integer", "number", "output_dir"]
