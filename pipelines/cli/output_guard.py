"""Refuse a run that would delete another input's shards from its `--output_dir` (unless `--overwrite`).

A run owns every split it makes: at the end it removes the shards of those splits that its plan
does not hold (an older shard count), since readers glob `{split}-*`. Before this guard it
removed every shard outside its plan, so `make preprocess CSV=train.csv` then
`make preprocess CSV=test.csv` into one folder silently deleted hours of train/val shards. At
scale the right answer is neither to delete them nor to keep them beside a report that no
longer covers them (stats.json and failures.csv would describe only the second input): the run
stops before any work and says how to get both, which is to rerun with every input at once;
the finished shards of the earlier input then match their markers and are skipped, not redone.

The same holds within one split: a run on another train CSV (a subset, another release) would
redo and delete the first one's train/val shards. So each run records its inputs (path and size)
in `DIR/inputs.json` before any work, and a later run into a folder holding shards is refused
when it does not read every input recorded there (the same files, unchanged in size). A rerun of
the same input (a resume) and one adding inputs (`--csv=EARLIER.csv,NEW.csv`) go on. `--overwrite`
lifts both refusals: the run then owns the folder and removes what its plan does not hold.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence, Set

from pipelines import schema
from pipelines.graph import shards
from pipelines.sources import layouts, storage
from pipelines.cli.cli_errors import InputError

INPUTS_JSON = "inputs.json"
_ADVICE = "use another --output_dir, or pass --overwrite to replace them"


def splits_made(csv_paths: Sequence[str], mode: str, val_fraction: float,
                layout: layouts.Layout = layouts.Layout()) -> Set[str]:
    """Every split a run on these CSVs can write (from their headers and the split flags)."""
    splits: Set[str] = set()
    for path in csv_paths:
        labelled = layouts.check_header(path, layout)
        if mode == "test" or (mode == "auto" and not labelled):
            splits.add("test")
        elif labelled:  # auto or train; an unlabelled CSV under --split=train makes only bad rows
            splits.update(["train", "val"] if val_fraction > 0 else ["train"])
    return splits


def other_splits(output_dir: str, splits: Set[str]) -> Set[str]:
    """Splits with shards in `output_dir` that a run making `splits` would not write."""
    found = (schema.parse_shard_name(storage.basename(p)) for p in storage.list_dir(output_dir))
    return {f[0] for f in found if f is not None and f[0] not in splits}


def refuse_other_splits(output_dir: str, csv_paths: Sequence[str], mode: str, val_fraction: float,
                        layout: layouts.Layout = layouts.Layout()) -> None:
    """InputError with a one-line explanation when the run would delete another input's shards."""
    made = splits_made(csv_paths, mode, val_fraction, layout)
    others = other_splits(output_dir, made)
    if others:
        raise InputError(
            f"{output_dir} holds {', '.join(sorted(others))} shards that this input "
            f"({', '.join(csv_paths)}, --split={mode}) does not make, so finishing would delete them. "
            "To keep both, rerun with every input at once (--csv=EARLIER.csv,"
            f"{','.join(csv_paths)}: finished shards are skipped), {_ADVICE}."
        )


def _identity(path: str) -> Dict[str, object]:
    """How an input is recognised on a rerun: its absolute path and size."""
    return {"path": path if storage.is_gcs(path) else os.path.abspath(path), "bytes": storage.size(path)}


def recorded_inputs(output_dir: str) -> List[Dict[str, object]]:
    """The inputs of the run that last wrote into `output_dir` ([] when none is recorded)."""
    try:
        return list(json.loads(storage.read_bytes(storage.join(output_dir, INPUTS_JSON)))["csv"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return []


def holds_shards(output_dir: str) -> bool:
    """Whether `output_dir` holds finished shards or shard markers."""
    names = [storage.basename(p) for p in storage.list_dir(output_dir)]
    return (any(schema.parse_shard_name(n) for n in names)
            or bool(storage.list_dir(storage.join(output_dir, shards.PARTS_DIR))))


def refuse_other_inputs(output_dir: str, csv_paths: Sequence[str]) -> None:
    """InputError when `output_dir` holds shards of a run on inputs this run does not read."""
    current = [_identity(p) for p in csv_paths]
    missing = [r for r in recorded_inputs(output_dir) if r not in current]
    if not missing or not holds_shards(output_dir):
        return
    by_path = {c["path"]: c["bytes"] for c in current}
    described = [
        f"{r['path']} (changed since: {r['bytes']} -> {by_path[r['path']]} bytes)" if r["path"] in by_path
        else str(r["path"]) for r in missing
    ]
    raise InputError(
        f"{output_dir} holds the shards of a run on {', '.join(described)}, which this run does not read, "
        f"so finishing would redo and delete them. To keep both, rerun with every input at once "
        f"(--csv=EARLIER.csv,{','.join(csv_paths)}: finished shards are skipped); else {_ADVICE}."
    )


def record_inputs(output_dir: str, csv_paths: Sequence[str]) -> None:
    """Write `DIR/inputs.json` for this run (before any shard is written)."""
    doc = {"csv": [_identity(p) for p in csv_paths]}
    storage.write_atomic(storage.join(output_dir, INPUTS_JSON), (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
