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
    confident answer on a distractor counts against it (indexer/evaluation/metrics.py).
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


def _spread(values: list) -> dict:
    kept = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not kept:
        return {"mean": None, "min": None, "max": None, "per_seed": values}
    return {"mean": sum(kept) / len(kept), "min": min(kept), "max": max(kept), "per_seed": values}


def over_seeds(runs: dict[int, list[Row]]) -> list[dict]:
    """Per method (in the first run's order): each column's mean, min, max and per-seed values over
    the runs {seed: rows}, and the mean seconds. Every run must have the same methods."""
    seeds = sorted(runs)
    methods = [r.method for r in runs[seeds[0]]]
    for seed in seeds:
        if [r.method for r in runs[seed]] != methods:
            raise ValueError(f"seed {seed} has other methods than seed {seeds[0]}")
    summary = []
    for i, method in enumerate(methods):
        rows = [runs[seed][i] for seed in seeds]
        entry = {"method": method, **{out: _spread([r.metrics.get(key) for r in rows]) for out, key, _ in COLUMNS}}
        costs = [r.seconds for r in rows if r.seconds is not None]
        entry["seconds"] = sum(costs) / len(costs) if costs else None
        summary.append(entry)
    return summary


def markdown_over_seeds(summary: list[dict]) -> str:
    """A Markdown table: method x (top-1, top-5, GAP as `mean (min-max)`, mean seconds)."""
    lines = ["| method | " + " | ".join(f"{title} mean (min-max)" for _, _, title in COLUMNS) + " | seconds |",
             "| --- | " + " | ".join("---:" for _ in COLUMNS) + " | ---: |"]
    for entry in summary:
        cells = []
        for out, _, _ in COLUMNS:
            s = entry[out]
            cells.append("n/a" if s["mean"] is None else f"{_cell(s['mean'])} ({_cell(s['min'])}-{_cell(s['max'])})")
        cost = "n/a" if entry["seconds"] is None else f"{entry['seconds']:.0f}"
        lines.append(f"| {entry['method']} | " + " | ".join(cells) + f" | {cost} |")
    return "\n".join(lines) + "\n"


def write_over_seeds(out_dir: str, runs: dict[int, list[Row]], context: dict) -> str:
    """`results.md` / `results.json` under `out_dir` for a run per seed; return the table text."""
    summary = over_seeds(runs)
    table = markdown_over_seeds(summary)
    context = {"seed runs": f"{len(runs)} ({', '.join(map(str, sorted(runs)))}): each row's mean over the seeds, with "
                        "the lowest and highest in brackets; each seed's own table is in seed-N/results.md",
               **context}
    notes = "".join(f"- {k}: {_note(v)}\n" for k, v in context.items())
    write_atomic(f"{out_dir}/results.md", f"# Demo results over {len(runs)} seed(s)\n\n{table}\n{notes}")
    write_atomic(f"{out_dir}/results.json", json.dumps({"seeds": sorted(runs), "rows": summary, **context}, indent=1,
                                                       default=str) + "\n")
    return table
