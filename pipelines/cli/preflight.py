"""Refusals before any work: inputs that would hang or fail the run later, flags nobody knows.

Each check raises `InputError` with one line naming the path or flag, so the command line ends
with `<cli>: error: ...` (pipelines/cli/cli_errors.py) instead of hanging on a FIFO, failing minutes
later inside a Beam worker with a traceback, or running with a misspelled flag silently dropped.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from typing import Iterable, List, Sequence

from pipelines.sources import bounded_read, storage, tar_source
from pipelines.cli.cli_errors import InputError

# How long to try to reach a Dask scheduler before refusing the run.
DASK_CONNECT_TIMEOUT_S = 5.0



def check_regular_files(paths: Iterable[str], flag: str, missing_ok: bool = False) -> None:
    """Every local path is an existing regular file (following links): a FIFO would block the
    reader forever, a device (/dev/zero) never ends. gs:// objects are always regular.
    `missing_ok`: a path that does not exist passes (a missing tar of `--tars` is a tar that cannot
    be read: its rows fail as `not_found`, naming it, and the other tars' rows go on)."""
    for path in paths:
        if storage.is_gcs(path):
            continue
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if missing_ok:
                continue
            raise InputError(f"{path}: does not exist ({flag})") from None
        except OSError as e:
            raise InputError(f"{path}: cannot be read ({flag}): {e.strerror}") from None
        kind = bounded_read.irregular_kind(mode)
        if kind:
            raise InputError(f"{path}: is {kind}, not a regular file ({flag})")


def check_md5_lists(paths: Sequence[str]) -> None:
    """Every `--tar_md5` list exists, is UTF-8 and holds only `<md5>  <name>` lines."""
    check_regular_files(paths, "--tar_md5")
    for path in paths:
        try:
            for _ in tar_source.read_md5_list(path):
                pass
        except FileNotFoundError:
            raise InputError(f"{path}: does not exist (--tar_md5)") from None
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at {e.start}; --tar_md5 "
                             "reads md5sum's output)") from None
        except ValueError as e:
            raise InputError(f"{e} (--tar_md5 reads md5sum's output)") from None


def check_output_dir(output_dir: str, flag: str = "--output_dir") -> None:
    """The output folder is a folder (or can be made) that this process can write into: a probe
    file is created and removed. gs:// folders are checked by the first write."""
    if storage.is_gcs(output_dir):
        return
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise InputError(f"{output_dir}: exists and is not a directory ({flag})")
    try:
        os.makedirs(output_dir, exist_ok=True)
        probe = os.path.join(output_dir, f".write-probe-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as e:
        raise InputError(f"{output_dir}: cannot write there ({flag}): {e.strerror}") from None


def check_dask_address(address: str) -> None:
    """A Dask scheduler answers at `address` (tcp://HOST:PORT), tried for a few seconds."""
    parsed = urllib.parse.urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise InputError(f"--dask_address={address}: expected tcp://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=DASK_CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise InputError(f"--dask_address={address}: no Dask scheduler answers there "
                         f"({e.strerror or type(e).__name__})") from None


def unknown_beam_flags(beam_args: Sequence[str]) -> List[str]:
    """The flags that no Beam options class loaded in this process knows (what Beam itself would
    drop with only a warning: "Discarding unparseable args")."""
    from apache_beam.options import pipeline_options  # lazy: pipelines.synthetic checks without Beam

    parser = pipeline_options._BeamArgumentParser(allow_abbrev=False)
    classes = {}
    for cls in pipeline_options.PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # what PipelineOptions.get_all_options does
    _, unknown = parser.parse_known_args(list(beam_args))
    return unknown


def refuse_unknown_flags(beam_args: Sequence[str]) -> None:
    unknown = unknown_beam_flags(beam_args)
    if unknown:
        raise InputError(
            f"unknown flag(s) {' '.join(unknown)}: neither this stage nor Beam knows them "
            "(python -m pipelines.preprocess --help lists this stage's flags)"
        )
