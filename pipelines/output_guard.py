"""Refuse a run that would delete another input's shards from its `--output_dir`.

A run owns every split it makes: at the end it removes the shards of those splits that its plan
does not hold (an older shard count), since readers glob `{split}-*`. Before this guard it
removed every shard outside its plan, so `make preprocess CSV=train.csv` then
`make preprocess CSV=test.csv` into one folder silently deleted hours of train/val shards. At
scale the right answer is neither to delete them nor to keep them beside a report that no
longer covers them (stats.json and failures.csv would describe only the second input): the run
stops before any work and says how to get both, which is to rerun with every input at once;
the finished shards of the earlier input then match their markers and are skipped, not redone.
"""

from __future__ import annotations

from typing import Sequence, Set

from pipelines import layouts, schema, storage


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
    """SystemExit with a one-line explanation when the run would delete another input's shards."""
    made = splits_made(csv_paths, mode, val_fraction, layout)
    others = other_splits(output_dir, made)
    if others:
        raise SystemExit(
            f"{output_dir} holds {', '.join(sorted(others))} shards that this input "
            f"({', '.join(csv_paths)}, --split={mode}) does not make, so finishing would delete them. "
            "To keep both, rerun with every input at once (--csv=EARLIER.csv,"
            f"{','.join(csv_paths)}: finished shards are skipped), or use another --output_dir."
        )
