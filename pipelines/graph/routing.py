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

from typing import Any, Dict, Iterable, Iterator, Tuple

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


class _Collect(beam.DoFn):
    def __init__(self, names: Tuple[str, ...]) -> None:
        self._names = names

    def process(self, keyed: Tuple[None, Iterable[Tuple[str, Any]]]) -> Iterator[Dict[str, list]]:
        parts: Dict[str, list] = {name: [] for name in self._names}
        for name, value in keyed[1]:
            if name in parts:
                parts[name].append(value)
        yield parts


class GatherAll(beam.PTransform):
    """{name: PCollection} -> ONE element {name: [every value]}, once all inputs are done (the
    inverse of `SplitByTag`). The inputs are gathered as main inputs under one key (a Flatten and
    a GroupByKey; a `Create` of one marker makes it fire when every input is empty), so a step
    after it runs once, after everything before it, on every runner: Beam 2.77's DaskRunner runs
    side inputs as no dependency and computes only a graph's last step (docs/scale.md)."""

    def expand(self, inputs: Dict[str, beam.PCollection]):
        names = tuple(inputs)
        labelled = [pc | f"Label_{name}" >> beam.Map(lambda value, tag: tagged(tag, value), name)
                    for name, pc in inputs.items()]
        once = next(iter(inputs.values())).pipeline | "Once" >> beam.Create([tagged("once", None)])
        return (
            [once, *labelled]
            | "Flatten" >> beam.Flatten()
            | "OneKey" >> beam.Map(lambda item: (None, item))
            | "All" >> beam.GroupByKey()
            | "Collect" >> beam.ParDo(_Collect(names))
        )
