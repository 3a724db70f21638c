"""2019-2021 solutions (id,landmarks,Usage): auto-detected, scored for Public, Private and all,
against GAP values computed by hand."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from indexer.evaluation import solutions
from indexer.evaluate import EvaluateConfig, evaluate

SOLUTION = """id,landmarks,Usage
q1,10,Public
q2,20 21,Public
q3,,Public
q4,30,Private
q5,40,Private
q6,50,Ignored
"""
# q3 is a non-landmark query answered confidently; q6 is Ignored (its confident right answer must not count).
SUBMISSION = """id,landmarks
q1,10 0.9
q2,21 0.8
q3,99 0.95
q4,31 0.7
q5,40 0.6
q6,50 0.99
"""


def test_the_2019_layout_is_detected_and_read(tmp_path):
    (tmp_path / "sol.csv").write_text(SOLUTION)
    sol = solutions.read_solution(str(tmp_path / "sol.csv"))
    assert sol.truth == {"q1": {10}, "q2": {20, 21}, "q3": set(), "q4": {30}, "q5": {40}}
    assert sol.usage == {"q1": "Public", "q2": "Public", "q3": "Public", "q4": "Private", "q5": "Private"}
    assert sol.ignored == {"q6"}
    (tmp_path / "old.csv").write_text("id,landmark_id\na,1\nb,\n")
    old = solutions.read_solution(str(tmp_path / "old.csv"))
    assert old.truth == {"a": {1}, "b": set()} and old.usage == {"a": "", "b": ""}
    (tmp_path / "bad.csv").write_text("id,landmarks,Usage\na,1,Secret\n")
    with pytest.raises(ValueError, match="bad.csv:2: Usage 'Secret'"):
        solutions.read_solution(str(tmp_path / "bad.csv"))
    (tmp_path / "bad.csv").write_text("id,landmarks,Usage\na,1 x,Public\n")
    with pytest.raises(ValueError, match="not space-separated integers"):
        solutions.read_solution(str(tmp_path / "bad.csv"))


def test_gap_for_public_private_and_all_by_hand(tmp_path):
    (tmp_path / "sol.csv").write_text(SOLUTION)
    (tmp_path / "sub.csv").write_text(SUBMISSION)
    result = evaluate(EvaluateConfig(str(tmp_path / "sub.csv"), str(tmp_path / "sol.csv"), None, str(tmp_path), "sum"))
    # all scored rows, by confidence: q3 wrong, q1 right (1/2), q2 right (2/3), q4 wrong, q5 right (3/5); M = 4
    assert result["gap"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 4)
    # Public: q3 wrong, q1 (1/2), q2 (2/3); M = 2.  Private: q4 wrong, q5 (1/2); M = 2
    assert result["gap_public"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result["gap_private"] == pytest.approx((1 / 2) / 2)
    assert (result["queries"], result["landmark_queries"], result["predicted"]) == (5, 4, 5)
    assert result["accuracy"] == pytest.approx(3 / 4)


def test_evaluate_command_prints_the_three_gaps(tmp_path, repo_root):
    (tmp_path / "sol.csv").write_text(SOLUTION)
    (tmp_path / "sub.csv").write_text(SUBMISSION)
    out = subprocess.run([sys.executable, "-m", "indexer.evaluate", f"--submission={tmp_path / 'sub.csv'}",
                          f"--solution={tmp_path / 'sol.csv'}"], check=True, cwd=repo_root, capture_output=True,
                         text=True).stdout
    assert "gap: 0.4417" in out and "gap_public: 0.5833" in out and "gap_private: 0.2500" in out
    assert json.loads((tmp_path / "metrics.json").read_text())["gap_private"] == 0.25
