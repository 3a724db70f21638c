"""`make bench-report`: how fast a report page of many answers opens in a browser.

Generates a prediction folder of `--queries` answers (tests/tools/fake_predictions.py: no images,
k = 10 neighbours, 3 verified), writes its page with `indexer.report` (5 neighbours shown), and
opens it `--runs` times in headless Chromium (`--chromium`, a Debian package:
`apt-get install chromium`). Per run it prints the wall time of the whole browser process that
opens the page and saves a screenshot (start, parse, script, first view, paint, exit), next to
the same for an empty page (the browser's own start-up). Then, once, the page's own figure:
milliseconds from navigation to the first rendered view (`data-render-ms`, set by the page's
script once it has parsed the JSON and rendered page 1 of the cards and the landmark table), and
how many answers it loaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("queries", 100_000, "answers in the page")
flags.DEFINE_integer("landmarks", 2000, "landmarks they are drawn from")
flags.DEFINE_integer("runs", 3, "browser runs")
flags.DEFINE_string("chromium", "chromium", "the browser binary")
flags.DEFINE_string("work_dir", None, "where the predictions and page go (default: a temporary folder)")

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def open_page(chromium: str, page: str, screenshot: str) -> float:
    """Wall seconds of one browser process that opens the page and saves a screenshot of it."""
    with tempfile.TemporaryDirectory() as profile:
        t0 = time.perf_counter()
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1100",
                        f"--screenshot={screenshot}", f"file://{os.path.abspath(page)}"],
                       capture_output=True, timeout=120, check=True)
        return time.perf_counter() - t0


def rendered(chromium: str, page: str) -> tuple:
    """(the page's data-render-ms, the answers it says it loaded), from its DOM after the script ran
    (--dump-dom writes the whole DOM, the 100k answers' JSON included, so it is not timed)."""
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                              f"file://{os.path.abspath(page)}"], capture_output=True, text=True, timeout=120).stdout
    answers = re.search(r'data-rendered="(\d+)"', dom)
    ms = re.search(r'data-render-ms="(\d+)"', dom)
    return int(ms.group(1)) if ms else None, int(answers.group(1)) if answers else None


def empty_page(work: str) -> str:
    path = os.path.join(work, "empty.html")
    with open(path, "w") as f:
        f.write("<!DOCTYPE html><html><body>empty</body></html>")
    return path


def main(argv) -> None:
    del argv
    from indexer import report
    from tests.tools import fake_predictions

    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench-report-")
    pred = os.path.join(work, "pred")
    t0 = time.perf_counter()
    fake_predictions.write(pred, FLAGS.queries, FLAGS.landmarks)
    t1 = time.perf_counter()
    page = os.path.join(pred, report.REPORT_HTML)
    report.write_report(report.ReportConfig(predictions=pred, output=page), with_pictures=False)
    t2 = time.perf_counter()
    print(f"{FLAGS.queries} answers: predictions generated in {t1 - t0:.1f} s, page written in {t2 - t1:.1f} s, "
          f"{os.path.getsize(page) / 1e6:.1f} MB")
    if not shutil.which(FLAGS.chromium):
        print(f"no {FLAGS.chromium} on PATH: install it (apt-get install chromium) to time the page")
        return
    shot = os.path.join(work, "report.png")
    for run in range(1, FLAGS.runs + 1):
        empty = open_page(FLAGS.chromium, empty_page(work), os.path.join(work, "empty.png"))
        wall = open_page(FLAGS.chromium, page, shot)
        print(f"run {run}: browser opened the page and saved a screenshot in {wall:.2f} s "
              f"(an empty page: {empty:.2f} s)")
    ms, answers = rendered(FLAGS.chromium, page)
    print(f"first view rendered {ms} ms after navigation, {answers} answers loaded; screenshot: {shot}")
    if not FLAGS.work_dir:
        shutil.rmtree(work)


if __name__ == "__main__":
    app.run(main)
