"""pipelines/cli/flag_checks.py: the one place numbers and output folders are checked."""

from __future__ import annotations

import os

import pytest

from pipelines.cli import flag_checks
from pipelines.cli.cli_errors import InputError


@pytest.mark.parametrize("value, low, high, above, message", [
    (float("nan"), 0, None, False, r"--w=nan: must be a finite number >= 0"),
    (float("inf"), None, None, False, r"--w=inf: must be a finite number$"),
    (-0.5, 0, None, False, r"--w=-0.5: must be a finite number >= 0"),
    (0.0, 0, None, True, r"--w=0.0: must be a finite number > 0"),
    (1.5, 0, 1, False, r"--w=1.5: must be a finite number >= 0 and <= 1"),
    ("x", None, None, False, r"--w='x': expected a number"),
])
def test_numbers_out_of_range_or_not_finite_are_refused(value, low, high, above, message):
    with pytest.raises(flag_checks.SettingsError, match=message):
        flag_checks.number("--w", value, low, high, above)


def test_good_numbers_and_integers_pass_through():
    assert flag_checks.number("--w", 0, 0) == 0.0 and flag_checks.number("--w", "2.5", 0, 3) == 2.5
    assert flag_checks.integer("--n", 3, 1, 3) == 3
    for bad, message in ((0, r"--n=0: must be an integer >= 1"), (True, "expected an integer"),
                         (2.0, "expected an integer")):
        with pytest.raises(flag_checks.SettingsError, match=message):
            flag_checks.integer("--n", bad, 1)
    assert issubclass(flag_checks.SettingsError, (InputError, ValueError))  # one line on a CLI, ValueError in Python


def test_output_folders_are_created_or_refused(tmp_path):
    made = flag_checks.output_dir(str(tmp_path / "a" / "b"))
    assert os.path.isdir(made) and os.listdir(made) == []  # the write probe leaves nothing
    a_file = tmp_path / "f"
    a_file.write_text("keep")
    with pytest.raises(flag_checks.SettingsError, match=f"--output_dir={a_file}: exists and is not a folder"):
        flag_checks.output_dir(str(a_file))
    with pytest.raises(flag_checks.SettingsError, match="cannot create it"):
        flag_checks.output_dir(str(a_file / "sub"), "--out")
    assert a_file.read_text() == "keep"
    assert flag_checks.output_dir("gs://bucket/x") == "gs://bucket/x"  # left to the storage client
