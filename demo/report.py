"""The demo's results table: one row per method, read from each method's `metrics.json`."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional

from demo.stages import write_atomic

# (results.json key, metrics.json key, title). top-1 is the submitted answers' accuracy, which
# spatial verification and penalties change; top-5 is the 10 nearest references' vote (neighbours.csv).
COLUMNS = (("top1", "accuracy", "top-1"), ("top5", "top5", "top-5"), ("gap", "gap", "GAP"))


@dataclasses.dataclass(frozen=True)
class Row:
    method: str
    metrics: dict  # the evaluate CLI's metrics.json
    seconds: Optional[float] = None  # what the row cost: its training (model rows), index build, prediction


def load_row(method: str, metrics_json: str, seconds: Optional[float] = None) -> Row:
    with open(metrics_json) as f:
        metrics = json.load(f)
    missing = [key for _, key, _ in COLUMNS if key not in metrics]
    if missing:
        raise ValueError(f"{metrics_json} lacks {missing} (has {sorted(metrics)})")
    return Row(method, metrics, seconds)


def _cell(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}"


def markdown(rows: list[Row]) -> str:
    """A Markdown table: method x (top-1, top-5, GAP, seconds the row cost)."""
    lines = ["| method | " + " | ".join(title for _, _, title in COLUMNS) + " | seconds |",
             "| --- | " + " | ".join("---:" for _ in COLUMNS) + " | ---: |"]
    for row in rows:
        cost = "n/a" if row.seconds is None else f"{row.seconds:.0f}"
        lines.append(f"| {row.method} | " + " | ".join(_cell(row.metrics.get(key)) for _, key, _ in COLUMNS)
                     + f" | {cost} |")
    return "\n".join(lines) + "\n"


def _note(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def write(out_dir: str, rows: list[Row], context: dict) -> str:
    """Write `results.md` and `results.json` under `out_dir`; return the table text.

    top-1 / top-5 are over the queries that show a known landmark; GAP ranks every answer, so a
    confident answer on a distractor counts against it (indexer/metrics.py).
    """
    table = markdown(rows)
    first = rows[0].metrics if rows else {}
    queries = first.get("queries", 0)
    landmark_queries = first.get("landmark_queries", 0)
    context = {"test queries": f"{queries} ({landmark_queries} of known landmarks, "
                               f"{queries - landmark_queries} distractors); top-1/top-5 over the landmark "
                               "queries (top-1: the submitted answer; top-5: the 10 nearest references' vote, "
                               "before spatial verification), GAP over all answers", **context}
    notes = "".join(f"- {k}: {_note(v)}\n" for k, v in context.items())
    write_atomic(f"{out_dir}/results.md", f"# Demo results\n\n{table}\n{notes}")
    payload = {"rows": [{"method": r.method, **{out: r.metrics.get(k) for out, k, _ in COLUMNS}, "seconds": r.seconds,
                         "metrics": r.metrics}
                        for r in rows], **context}
    write_atomic(f"{out_dir}/results.json", json.dumps(payload, indent=1, default=str) + "\n")
    return table
