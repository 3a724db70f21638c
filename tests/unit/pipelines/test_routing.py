"""`SplitByTag`: each tag's values reach exactly its own output."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.graph.routing import SplitByTag, tagged


def test_split_by_tag_routes_each_value_to_its_tag_only():
    pairs = [tagged("rows", 1), tagged("failures", "f1"), tagged("rows", 2), tagged("rows", 2), tagged("failures", "f2")]
    with BeamTestPipeline() as p:
        out = p | beam.Create(pairs) | SplitByTag("rows", "failures", "none")
        assert_that(out["rows"], equal_to([1, 2, 2]), label="rows")
        assert_that(out["failures"], equal_to(["f1", "f2"]), label="failures")
        assert_that(out["none"], equal_to([]), label="none")
