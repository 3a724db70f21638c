"""Several outputs of one step, carried as data: `(tag, value)` pairs in ONE PCollection, split
by one Filter per tag.

Why not `beam.ParDo(...).with_outputs(...)` (or `beam.Partition`, built on it): Beam 2.77's
DaskRunner translates each transform to one Dask bag keyed by the transform, not by its output
PCollection, so every output of a multi-output ParDo is the same bag holding all outputs mixed,
tags dropped; a consumer of `.failures` also gets the rows, and a Flatten of two outputs of one
ParDo gets everything twice (see docs/scale.md). Tagged pairs plus Filters mean the same on
every runner and cost one trivial ParDo per tag.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Tuple

import apache_beam as beam


def tagged(tag: str, value: Any) -> Tuple[str, Any]:
    """An element bound for output `tag` of a `SplitByTag`."""
    return (tag, value)


class _Only(beam.DoFn):
    def __init__(self, tag: str) -> None:
        self._tag = tag

    def process(self, item: Tuple[str, Any]) -> Iterator[Any]:
        if item[0] == self._tag:
            yield item[1]


class SplitByTag(beam.PTransform):
    """`(tag, value)` pairs -> {tag: PCollection of values} for each of `tags` (a pair with another
    tag goes nowhere: use module constants for tags; stats.json's `accounted_for` catches a loss)."""

    def __init__(self, *tags: str) -> None:
        super().__init__()
        self._tags = tuple(tags)

    def expand(self, pairs) -> Dict[str, beam.PCollection]:
        return {tag: pairs | f"Only_{tag}" >> beam.ParDo(_Only(tag)) for tag in self._tags}
