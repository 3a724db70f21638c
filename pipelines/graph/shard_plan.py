"""The shard plan: what the plan phase hands to the build phase, as files beside the output.

The preprocessing runs as two Beam pipelines (pipelines/preprocess.py):

    plan:   CSVs -> ReadCsvRows -> DedupById [-> LocateInTars] -> PlanShards -> WritePlan
            (without --tars: the same steps as plain calls in the submitting process,
            pipelines/graph/driver_plan.py)
    build:  Create(shard names) -> LoadShardPlans -> BuildShards
    report: plan.json + every shard's marker -> failures.csv, stats.json (pipelines/graph/report.py,
            in the submitting process)

The plan phase is one light pass over the rows (no image is fetched). `WritePlan` writes, under
`OUTPUT/_plan/`, one file per shard to build (its key, fingerprint and rows) and `plan.json`
(every split's shard count, the rows read, the rows that failed before sharding, and the names of
the shards to build; finished shards are left out, as the plan phase found their markers). The
build phase starts from one element per shard to build, a `Create` of those names, so every
runner, Beam's DaskRunner included (whose parallelism comes from `Create` alone, docs/scale.md),
can give each shard its own task; each task reads its shard's rows from the plan. The report
reads `plan.json` once the build is done; the folder is removed after it (`remove`).
"""

from __future__ import annotations

import json
from typing import Dict, Iterable, List, Sequence, Tuple

import apache_beam as beam

from pipelines import schema
from pipelines.graph import shards
from pipelines.sources import storage
from pipelines.sources.csv_input import Row
from pipelines.graph.routing import GatherAll

PLAN_DIR = "_plan"
SUMMARY = "plan.json"
# plan.json's keys.
COUNTS, FAILURES, ROWS_IN, BUILD = "counts", "failures", "rows_in", "build"


def plan_dir(output_dir: str) -> str:
    return storage.join(output_dir, PLAN_DIR)


def shard_file(output_dir: str, name: str) -> str:
    """The plan file of the shard named `name` (a `schema.shard_name`)."""
    return storage.join(plan_dir(output_dir), name[: -len(schema.SHARD_SUFFIX)] + ".json")


def write_shard_plan(output_dir: str, task: Tuple) -> str:
    """Write one build task (key, fingerprint, rows, keep) atomically; returns the shard's name.
    `keep` (--retry_failed): the shard keeps its records and only `rows` are fetched again."""
    key_t, digest, rows = task[:3]
    keep = bool(len(task) > 3 and task[3])
    key = shards.ShardKey(*key_t)
    doc = {"shard": list(key), "fingerprint": digest, "rows": [list(r) for r in rows], "keep": keep}
    storage.write_atomic(shard_file(output_dir, key.name), json.dumps(doc).encode("utf-8"))
    return key.name


def read_shard_plan(output_dir: str, name: str) -> Tuple[Tuple[str, int, int], str, List[Row], bool]:
    """The build task `write_shard_plan` wrote for the shard `name`."""
    doc = json.loads(storage.read_bytes(shard_file(output_dir, name)))
    rows = [Row(i, u, loc, label, split, tuple(order)) for i, u, loc, label, split, order in doc["rows"]]
    return tuple(doc["shard"]), doc["fingerprint"], rows, bool(doc.get("keep", False))


def summary_bytes(counts: Iterable[Tuple[str, int]], failures: Iterable[Sequence[str]], rows_in: int,
                  build: Iterable[str]) -> bytes:
    doc = {
        COUNTS: dict(sorted(counts)),
        ROWS_IN: rows_in,
        FAILURES: sorted(list(f) for f in failures),
        BUILD: sorted(build),
    }
    return json.dumps(doc, sort_keys=True).encode("utf-8")


def read_summary(output_dir: str) -> dict:
    """plan.json's content; FileNotFoundError when the plan phase did not finish."""
    return json.loads(storage.read_bytes(storage.join(plan_dir(output_dir), SUMMARY)))


def remove(output_dir: str) -> None:
    """Delete the plan folder (after a finished run)."""
    folder = plan_dir(output_dir)
    for sub in (storage.join(folder, storage.TMP_DIR), folder):
        for path in storage.list_dir(sub):
            storage.delete(path)
        storage.remove_empty_dir(sub)


def _write_summary(output_dir: str, parts: Dict[str, list]) -> str:
    path = storage.join(plan_dir(output_dir), SUMMARY)
    storage.write_atomic(path, summary_bytes(parts[COUNTS], parts[FAILURES], sum(parts[ROWS_IN]), parts[BUILD]))
    return path


class WritePlan(beam.PTransform):
    """{"tasks": build tasks, "counts", "failures", "rows_in"} -> the path of plan.json, written
    after every shard's plan file.

    The inputs are gathered as main inputs (`routing.GatherAll`),
    so this is the plan pipeline's one final step on every runner. `rows_in` may be empty (0).
    """

    def __init__(self, output_dir: str) -> None:
        super().__init__()
        self._output_dir = output_dir

    def expand(self, inputs):
        out = self._output_dir
        planned = inputs["tasks"] | "WriteShardPlans" >> beam.Map(lambda task: write_shard_plan(out, task))
        return (
            {COUNTS: inputs[COUNTS], FAILURES: inputs[FAILURES], ROWS_IN: inputs[ROWS_IN], BUILD: planned}
            | "Gather" >> GatherAll()
            | "WriteSummary" >> beam.Map(lambda parts: _write_summary(out, parts))
        )


class LoadShardPlans(beam.PTransform):
    """Names of shards to build -> their build tasks (key, fingerprint, rows), read from the plan
    (`transforms.BuildShards` then spreads the tasks over workers)."""

    def __init__(self, output_dir: str) -> None:
        super().__init__()
        self._output_dir = output_dir

    def expand(self, names):
        out = self._output_dir
        return names | "Load" >> beam.Map(lambda name: read_shard_plan(out, name))
