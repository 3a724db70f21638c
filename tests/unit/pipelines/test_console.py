"""Progress lines (count, rate, ETA) off a terminal, and the plain absl formatter."""

from __future__ import annotations

import logging
import re

from pipelines.cli import console


def test_progress_logs_rate_and_eta_off_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="progress")
    with console.Progress("rows fetched", total=10, unit="row", every_s=0.0, live=False) as progress:
        progress.update(4)
        progress.update(6)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # one per update (every_s=0) and the final one
    assert re.match(r"rows fetched:  40% 4/10 \[[0-9:]+<[0-9:?]+, .*row/s\]", lines[0]), lines
    assert lines[-1].startswith("rows fetched: 100% 10/10")
    caplog.clear()
    with console.Progress("quiet", total=None, unit="img", every_s=3600, live=False) as progress:
        progress.update(5)
    assert [r.getMessage().split(" [")[0] for r in caplog.records] == ["quiet: 5img"]  # only the end


def test_plain_formatter_drops_the_prefix_but_names_warnings():
    fmt = console._PlainFormatter("%(message)s")
    info = logging.LogRecord("x", logging.INFO, "f.py", 1, "embedded %d", (3,), None)
    warn = logging.LogRecord("x", logging.WARNING, "f.py", 1, "careful", (), None)
    assert (fmt.format(info), fmt.format(warn)) == ("embedded 3", "WARNING: careful")
