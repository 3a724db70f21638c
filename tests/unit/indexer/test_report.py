"""The error-analysis page (indexer/report.py): its structure and counts on small data, read back
from the embedded JSON and the HTML, checked against `indexer.evaluate` and by hand."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from indexer import predict, report
from indexer.evaluation import metrics, report_images, report_page
from indexer.build import build
from indexer.evaluate import EvaluateConfig, evaluate
from indexer.outputs import read_submission
from tests.tools import fake_predictions
from tests.unit.indexer.test_build_predict import (  # noqa: F401 - test_csv is a fixture used here
    build_config, fake_preprocessed, predict_config, test_csv)
from tests.unit.indexer.test_verify import another_view, jpeg, scene

Q_ID, Q_ANS, Q_CONF, Q_TRUTH, Q_STATUS, Q_THUMB, Q_NB, Q_MATCH, Q_ERR, Q_GAP = range(10)


def page_of(path) -> tuple:
    text = open(path, encoding="utf-8").read()
    return text, report_page.read_data(text)


def write_hand_made(pred) -> str:
    """Five queries whose statuses are known by hand; returns the solution's path."""
    pred.mkdir()
    (pred / "submission.csv").write_text("id,landmarks\nright,1 0.9\nwrong,2 0.8\ndistractor,1 0.95\n"
                                         "missed,\nrejected,\n")
    rows = ["id,rank,neighbour_id,landmark_id,similarity"]
    for image_id, lms in (("right", (1, 1, 2)), ("wrong", (2, 1, 1)), ("distractor", (1, 2, 2)),
                          ("missed", (3, 3, 1)), ("rejected", (2, 2, 2))):
        rows += [f"{image_id},{r + 1},ref-{image_id}-{r},{lm},{0.9 - 0.1 * r:.6f}" for r, lm in enumerate(lms)]
    (pred / "neighbours.csv").write_text("\n".join(rows) + "\n")
    (pred / "verification.csv").write_text("id,rank,inliers\nright,1,33\nright,2,4\n")
    solution = pred / "solution.csv"
    solution.write_text("id,landmark_id\nright,1\nwrong,1\ndistractor,\nmissed,3\nrejected,\n")
    (pred / "names.csv").write_text("landmark_id,name\n1,Old bridge\n2,<b>Tower</b>\n")
    (pred / "config.json").write_text(json.dumps({"index_dir": None, "solution": str(solution)}))
    return str(solution)


def test_the_page_holds_every_answer_with_its_status_and_evaluates_counts(tmp_path):
    pred = tmp_path / "pred"
    solution = write_hand_made(pred)
    out = pred / "report.html"
    summary = report.write_report(report.ReportConfig(predictions=str(pred), output=str(out),
                                                      landmark_names=str(pred / "names.csv")))
    text, data = page_of(out)
    statuses = {q[Q_ID]: q[Q_STATUS] for q in data["queries"]}
    assert statuses == {"right": "right", "wrong": "wrong", "distractor": "distractor", "missed": "missed",
                        "rejected": "rejected"}
    assert [q[Q_ID] for q in data["queries"]] == ["right", "wrong", "distractor", "missed", "rejected"]
    # GAP by hand: ranked distractor (0.95, never right), right (0.9, right: P = 1/2), wrong; M = 3
    assert summary["gap"] == pytest.approx(0.5 / 3)
    assert (summary["right"], summary["wrong"], summary["missed"], summary["distractors_answered"]) == (2, 1, 1, 1)
    evaluated = evaluate(EvaluateConfig(str(pred / "submission.csv"), solution, str(pred / "neighbours.csv"),
                                        str(tmp_path / "ev"), "sum"))
    for key in ("queries", "landmark_queries", "predicted", "gap", "accuracy", "top1", "top5"):
        assert data["summary"][key] == pytest.approx(evaluated[key]), key
    # the per-landmark table: landmark 1 has 2 queries, 1 right, named twice (one wrongly); its GAP share is all of it
    table = {row[0]: row for row in data["landmarks"]}
    assert table[1][2:6] == [2, 1, 2, 1] and table[1][6] == pytest.approx(summary["gap"])
    assert table[3][2:6] == [1, 0, 0, 0] and table[2][2:6] == [0, 0, 1, 1]
    assert sum(row[6] for row in data["landmarks"]) == pytest.approx(summary["gap"])
    # neighbours with similarity and inliers (-1: not verified), names, no photos without records
    right = data["queries"][0]
    assert [(data["refs"][r][0], s, n) for r, s, n in right[Q_NB]] == [
        ("ref-right-0", 0.9, 33), ("ref-right-1", 0.8, 4), ("ref-right-2", 0.7, -1)]
    assert right[Q_THUMB] is None and right[Q_MATCH] is None
    assert data["names"] == {"1": "Old bridge", "2": "<b>Tower</b>"}
    # structure: one self-contained page, the data in one JSON block, no markup injected by a name
    assert "<b>Tower</b>" not in text and text.count("<script") == 2 and "http" not in text.split("<script")[0]
    for element in ('id="view"', 'id="lm"', 'id="sort"', 'id="queries"', 'id="landmarks"', 'id="detail"'):
        assert element in text
    assert re.search(r'<option value="distractors">', text) and "PAGE = 50;" in text


def test_a_large_page_keeps_one_json_row_per_answer_and_no_row_markup(tmp_path):
    paths = fake_predictions.write(str(tmp_path / "pred"), queries=3000, landmarks=40)
    out = tmp_path / "pred" / "report.html"
    report.write_report(report.ReportConfig(predictions=str(tmp_path / "pred"), output=str(out), neighbours=3),
                        with_pictures=False)
    text, data = page_of(out)
    assert len(data["queries"]) == 3000 and all(len(q[Q_NB]) == 3 for q in data["queries"])
    assert text.count('class="card') == 1  # only the script's template: cards are rendered a page at a time
    submitted = read_submission(str(tmp_path / "pred" / "submission.csv"))
    truth = {q[Q_ID]: frozenset(q[Q_TRUTH]) for q in data["queries"]}
    assert data["summary"]["gap"] == pytest.approx(metrics.gap(submitted, truth))
    assert data["summary"]["predicted"] == len(submitted) == 2700
    assert data["names"]["7"] == "Landmark number 7" and paths["names"].endswith("names.csv")
    terms = [q[Q_GAP] or 0.0 for q in data["queries"]]
    assert sum(terms) == pytest.approx(data["summary"]["gap"], abs=1e-5)


def test_matches_are_the_verifiers_inliers_scaled_to_the_thumbnails(tmp_path):
    from indexer.ranking import local_features

    reference, query = jpeg(scene(1)), jpeg(another_view(scene(1)))
    store_path = str(tmp_path / local_features.STORE)
    local_features.write_store(store_path, [jpeg(scene(2)), reference], 2, 500)
    lines = report_images.match_lines([("q", query, 1)], local_features.open_store(store_path))["q"]
    assert lines.shape[1] == 4 and len(lines) >= 100  # measured ~250 (test_verify)
    thumbs = report_images.thumbnails([("q", query), ("r", reference)], str(tmp_path / "t"), size=100)
    assert (thumbs["q"].width, thumbs["q"].height) == (100, 75) and thumbs["q"].scale == pytest.approx(100 / 300)
    assert os.path.isfile(tmp_path / "t" / thumbs["q"].path)
    flat = report_images.scaled(lines, thumbs["q"], thumbs["r"])
    assert len(flat) == 4 * len(lines) and max(flat) <= 100.5
    # same scene moved a little: each match lands near where the query point is
    pairs = np.array(flat).reshape(-1, 4)
    assert np.median(np.abs(pairs[:, :2] - pairs[:, 2:])) < 10
    mtime = os.path.getmtime(tmp_path / "t" / thumbs["q"].path)
    report_images.thumbnails([("q", query)], str(tmp_path / "t"), size=100)  # made once: kept
    assert os.path.getmtime(tmp_path / "t" / thumbs["q"].path) == mtime


def test_predict_writes_the_report_with_photos_names_and_verification(tiny_export, reference_shards, tmp_path,
                                                                       test_csv):
    csv_path, solution = test_csv
    index = tmp_path / "idx"
    build(build_config(tiny_export, reference_shards, index, local_features=200))
    names = tmp_path / "names.csv"
    names.write_text("landmark_id,category\n0,http://commons.wikimedia.org/wiki/Category:Pont_d%27Avignon\n")
    pred = tmp_path / "pred"
    config = predict_config(index, csv_path, pred, verify_k=2, solution=str(solution), landmark_names=str(names),
                            report=True)
    fake_preprocessed(pred, reference_shards, config)
    predict.predict(config)
    text, data = page_of(pred / report.REPORT_HTML)
    by_id = {q[Q_ID]: q for q in data["queries"]}
    assert len(by_id) == 14 and by_id["broken"][Q_STATUS] == "failed" and by_id["broken"][Q_ERR] == "truncated"
    assert by_id["lost"][Q_STATUS] == "missed"
    assert data["names"] == {"0": "Pont d'Avignon"}
    shown = by_id["val-000-000"]
    assert shown[Q_THUMB] is not None and os.path.isfile(pred / data["thumb_dir"] / shown[Q_THUMB][0])
    assert all(data["refs"][r][2] is not None for r, _, _ in shown[Q_NB])  # reference photos from the shards
    assert all(n >= 0 for _, _, n in shown[Q_NB][:2])  # verification.csv: the first verify_k=2 neighbours
    assert all(n == -1 for _, _, n in shown[Q_NB][2:])  # only verify_k=2 neighbours were verified
    evaluated = evaluate(EvaluateConfig(str(pred / "submission.csv"), str(solution), str(pred / "neighbours.csv"),
                                        str(tmp_path / "ev"), "sum"))
    assert data["summary"]["gap"] == pytest.approx(evaluated["gap"])
    assert data["summary"]["top1"] == pytest.approx(evaluated["top1"])


def test_a_bad_names_file_is_one_line_before_any_work(tmp_path):
    pred = tmp_path / "pred"
    write_hand_made(pred)
    bad = tmp_path / "bad.csv"
    bad.write_text("landmark_id,name\n1,a\nx,b\n")
    run = subprocess.run([sys.executable, "-m", "indexer.report", f"--predictions={pred}", f"--landmark_names={bad}"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.strip().splitlines()[-1] == (
        f"indexer.report: error: {bad}: row 3: landmark_id 'x' is not an integer")
    assert not (pred / report.REPORT_HTML).exists()
