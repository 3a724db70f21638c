"""Solution files in both Kaggle layouts, told apart by their header:

  2018         id,landmark_id              (landmark_id empty: a non-landmark query)
  2019-2021    id,landmarks,Usage          landmarks = space-separated ids (any is correct, empty:
                                           non-landmark); Usage = Public, Private or Ignored
Ignored rows are not scored (Kaggle drops them): predictions for them are dropped too. The
2019-2021 layout is scored three ways, as the leaderboards were: Public, Private, and all the
scored rows together.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, FrozenSet, Mapping, Tuple

from indexer import outputs

USAGES = ("Public", "Private")
IGNORED = "Ignored"


@dataclasses.dataclass(frozen=True)
class Solution:
    """Scored ids -> their correct landmarks, and each scored id's Usage ("" in the 2018 layout)."""

    truth: Dict[str, FrozenSet[int]]
    usage: Dict[str, str]
    ignored: FrozenSet[str] = frozenset()

    def subset(self, usage: str) -> Dict[str, FrozenSet[int]]:
        """The truth of the ids with this Usage."""
        return {i: t for i, t in self.truth.items() if self.usage[i] == usage}

    def scored(self, predictions: Mapping[str, Tuple[int, float]]) -> Dict[str, Tuple[int, float]]:
        """`predictions` without those for Ignored ids."""
        return {i: p for i, p in predictions.items() if i not in self.ignored}


def _landmarks(value: str, where: str) -> FrozenSet[int]:
    try:
        return frozenset(int(x) for x in (value or "").split())
    except ValueError:
        raise outputs.BadCsvError(f"{where}: landmarks {value!r} are not space-separated integers") from None


def read_solution(path: str) -> Solution:
    """Either layout (auto-detected from the header); ValueError naming the line on a bad value."""
    header = outputs.read_rows(path, ["id"])
    if not header:
        raise outputs.BadCsvError(f"{path}: no rows")
    columns = set(header[0])
    if "landmark_id" in columns:
        truth = outputs.read_solution(path)
        return Solution(truth, {i: "" for i in truth})
    if not {"landmarks", "Usage"} <= columns:
        raise outputs.BadCsvError(f"{path}: header {sorted(columns)} is neither id,landmark_id nor id,landmarks,Usage")
    truth: Dict[str, FrozenSet[int]] = {}
    usage: Dict[str, str] = {}
    ignored = set()
    for n, row in enumerate(outputs.unique_ids(path, header), start=2):
        where = f"{path}:{n}"
        if row["Usage"] == IGNORED:
            ignored.add(row["id"])
            continue
        if row["Usage"] not in USAGES:
            raise outputs.BadCsvError(f"{where}: Usage {row['Usage']!r}, expected one of {USAGES + (IGNORED,)}")
        truth[row["id"]] = _landmarks(row["landmarks"], where)
        usage[row["id"]] = row["Usage"]
    return Solution(truth, usage, frozenset(ignored))
