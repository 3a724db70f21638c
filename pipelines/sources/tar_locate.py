"""`LocateInTars`: give rows read with `--tars` the byte range of their photo in GLDv2's tars.

    tar paths + md5 lists' tar entries --GroupByKey by tar name--> ReadHeaders --> (id, member)
    (id, member) + md5 lists' member entries + rows --CoGroupByKey by id--> located rows | failures
    rows without a member + unreadable tars' names --GroupByKey by id bucket--> not_found failures

One element per tar reads its headers (`tar_source.index_tar`, in parallel over tars), once:
the tar's md5 list entry reaches it as a main input (joined by tar name), and the names of the
tars that could not be read reach the rows without a member the same way (joined by a hash
bucket of the id). No side inputs: Beam 2.77's DaskRunner recomputes a side input's whole
upstream in every task that reads it, which read (and hashed) every tar once per task
(docs/scale.md). Only (id, tar, offset, size) travel on, never image bytes.

A row whose id has no member fails as `not_found` (naming any tar that could not be read); with md5 lists, a member of a tar whose
whole-tar md5 differs fails as `md5_mismatch`, one that neither the list nor its tar's entry
covers as `md5_missing`, and a member entry's md5 travels with the row and is checked when the
bytes are read (`tar_source.read_member`). An id found in several tars uses the first (by the
order of `--tars`, then position). Members without a row are ignored.
"""

from __future__ import annotations

import logging
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.graph import shards
from pipelines.sources import storage, tar_source
from pipelines.sources.csv_input import Failure, Row
from pipelines.graph.routing import SplitByTag, tagged
from pipelines.graph.transforms import FAILURES, NAMESPACE, ROWS, RowsAndFailures

UNREADABLE = "unreadable"
MEMBERS = "members"
TAR, MD5 = "tar", "md5"
MISSING = "missing"
# Rows without a member are joined with the unreadable tars' names per bucket of their id (each
# name goes to every bucket), so no single key holds all of them.
_BUCKETS = 64

_LOG = logging.getLogger(__name__)


class _ReadHeaders(beam.DoFn):
    """(tar name, [("tar", (order, path)) per tar of that name, ("md5", md5) per list entry]) ->
    (id, (order, member, tar problem or "", tar checked)) per member; unreadable tars tagged."""

    def process(self, named: Tuple[str, Sequence[Tuple[str, object]]]) -> Iterator:
        _, parts = named
        md5s = sorted(value for kind, value in parts if kind == MD5)
        for kind, value in parts:
            if kind == TAR:
                yield from self._read(value, md5s[0] if md5s else None)

    def _read(self, indexed: Tuple[int, str], expected: Optional[str]) -> Iterator:
        order, path = indexed
        members: List[tar_source.Member] = []
        problem = ""
        try:
            for member in tar_source.index_tar(path, expected):  # keeps what precedes a damaged header
                members.append(member)
        except tar_source.TarChecksumError as e:
            problem = str(e)  # the headers were read: its members fail as md5_mismatch
        except Exception as e:  # missing, truncated or not a tar: its rows fail as not_found
            _LOG.warning("cannot read %s: %s", path, e)
            yield tagged(UNREADABLE, f"{storage.basename(path)}: {type(e).__name__}: {e}")
        Metrics.counter(NAMESPACE, "tar_members").inc(len(members))
        _LOG.info("%s: %d members", storage.basename(path), len(members))
        for m in members:
            yield tagged(MEMBERS, (m.image_id, (order, m, problem, expected is not None)))


def _md5_entries(path: str) -> Iterator[Tuple[str, str]]:
    return tar_source.read_md5_list(path)


class _Locate(beam.DoFn):
    def __init__(self, n_tars: int, checking: bool) -> None:
        self._n_tars = n_tars
        self._checking = checking

    def process(self, grouped: Tuple[str, Dict[str, Sequence]]) -> Iterator:
        image_id, parts = grouped
        rows: Sequence[Row] = parts["rows"]
        if not rows:
            return
        members = sorted(parts["members"], key=lambda m: (m[0], m[1].offset))
        if not members:
            for row in rows:  # failed by `_NotFound`, once the unreadable tars are known
                yield tagged(MISSING, (shards.stable_hash("bucket", row.image_id) % _BUCKETS, (MISSING, row)))
            return
        md5s = sorted(set(parts["md5"]))
        for row in rows:
            failure = self._fail(row, members, md5s)
            if failure is not None:
                Metrics.counter(NAMESPACE, f"failed_{failure.reason}").inc()
                yield tagged(FAILURES, failure)
                continue
            _, member, _, tar_checked = members[0]
            md5 = "" if tar_checked or not self._checking else md5s[0]
            yield tagged(ROWS, row._replace(url=tar_source.source_url(member), location=tar_source.location(member, md5)))

    def _fail(self, row: Row, members, md5s: List[str]) -> Optional[Failure]:
        _, member, problem, tar_checked = members[0]
        url = tar_source.source_url(member)
        if problem:
            return Failure(row.image_id, url, "md5_mismatch", problem)
        if self._checking and not tar_checked and not md5s:
            return Failure(row.image_id, url, "md5_missing", "the md5 list names neither this member nor its tar")
        if len(md5s) > 1:
            return Failure(row.image_id, url, "md5_mismatch", f"the md5 list gives {len(md5s)} different md5s")
        return None


class _NotFound(beam.DoFn):
    """(bucket, [("missing", row) ..., ("unreadable", tar problem) ...]) -> a `not_found` Failure
    per row, naming the tars that could not be read."""

    def __init__(self, n_tars: int) -> None:
        self._n_tars = n_tars

    def process(self, bucket: Tuple[int, Sequence[Tuple[str, object]]]) -> Iterator[Failure]:
        _, parts = bucket
        unreadable = sorted(value for kind, value in parts if kind == UNREADABLE)
        note = f"; unreadable: {'; '.join(unreadable)}" if unreadable else ""
        for kind, row in parts:
            if kind == MISSING:
                Metrics.counter(NAMESPACE, "failed_not_found").inc()
                yield Failure(row.image_id, row.url, "not_found", f"no member for this id in {self._n_tars} tar(s){note}")


class LocateInTars(beam.PTransform):
    """Rows without a location -> `.rows` (located) and `.failures` (`Failure`s) (see module doc).

    Several outputs travel as tagged pairs split by `routing.SplitByTag` (the DaskRunner mixes the
    outputs of a `with_outputs` ParDo)."""

    def __init__(self, tars: Sequence[str], md5_lists: Sequence[str] = ()) -> None:
        super().__init__()
        self._tars = list(tars)
        self._md5_lists = list(md5_lists)

    def expand(self, rows):
        p = rows.pipeline
        entries = (
            p
            | "Md5Lists" >> beam.Create(self._md5_lists or [None])
            | "ReadMd5" >> beam.FlatMap(lambda path: _md5_entries(path) if path else [])
        )
        tar_md5 = (
            entries
            | "TarEntries" >> beam.Filter(lambda e: tar_source.is_tar_entry(e[0]))
            | "ByTarName" >> beam.Map(lambda e: (storage.basename(e[0]), (MD5, e[1])))
        )
        member_md5 = (
            entries
            | "MemberEntries" >> beam.Filter(lambda e: not tar_source.is_tar_entry(e[0]))
            | "ById" >> beam.Map(lambda e: (tar_source.member_id(e[0]), e[1]))
        )
        tars = (
            p
            | "Tars" >> beam.Create(list(enumerate(self._tars)))
            | "TarByName" >> beam.Map(lambda indexed: (storage.basename(indexed[1]), (TAR, indexed)))
        )
        headers = (
            (tars, tar_md5)
            | "TarsAndMd5" >> beam.Flatten()
            | "JoinTarMd5" >> beam.GroupByKey()
            | "ReadHeaders" >> beam.ParDo(_ReadHeaders())
            | "RouteHeaders" >> SplitByTag(MEMBERS, UNREADABLE)
        )
        grouped = {
            "rows": rows | "RowsById" >> beam.Map(lambda r: (r.image_id, r)),
            "members": headers[MEMBERS],
            "md5": member_md5,
        } | "JoinById" >> beam.CoGroupByKey()
        routed = (
            grouped
            | "Locate" >> beam.ParDo(_Locate(len(self._tars), bool(self._md5_lists)))
            | "RouteRows" >> SplitByTag(ROWS, FAILURES, MISSING)
        )
        unreadable = headers[UNREADABLE] | "ToEveryBucket" >> beam.FlatMap(
            lambda text: [(b, (UNREADABLE, text)) for b in range(_BUCKETS)])
        not_found = (
            (routed[MISSING], unreadable)
            | "MissingAndUnreadable" >> beam.Flatten()
            | "JoinUnreadable" >> beam.GroupByKey()
            | "NotFound" >> beam.ParDo(_NotFound(len(self._tars)))
        )
        failures = (routed[FAILURES], not_found) | "AllFailures" >> beam.Flatten()
        return RowsAndFailures(routed[ROWS], failures)
