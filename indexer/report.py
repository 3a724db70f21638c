"""`python -m indexer.report --predictions=PRED [--solution=CSV] [--landmark_names=CSV] [--output=HTML]`

An error-analysis page for one prediction folder (`indexer.predict`'s output): every answer, its
photo, confidence and nearest references, the matches spatial verification found, filters
(wrong answers, confident distractors, one landmark), sorting by confidence, and a per-landmark
table (queries, top-1, GAP contribution). One static HTML file (indexer/evaluation/report_page.py) with
its thumbnails in a folder beside it (indexer/evaluation/report_images.py): it opens offline, from disk.

Reads PRED/submission.csv (every id, in order), PRED/neighbours.csv, PRED/verification.csv
(inliers per verified neighbour, when predict verified), PRED/config.json (the index folder, and
the solution and names predict was given, used unless the flags say otherwise),
PRED/test_records/ (query photos and failure reasons; or the --test_records / --records_dir predict read) and the index's reference shards. Counts
and GAP come from indexer/evaluation/metrics.py and indexer/evaluation/solutions.py, as `indexer.evaluate` computes
them, so the page's figures are `make evaluate`'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging as pylogging
import os
import time
from typing import Dict, List, Optional, Tuple

from absl import app, flags, logging

from indexer import outputs
from indexer.evaluation import metrics, names as naming, report_images, report_page, solutions
from indexer.ranking.vote import METHODS
from pipelines.cli import console
from pipelines.cli.cli_errors import InputError, absl_main

REPORT_HTML = "report.html"
VERIFICATION_CSV = "verification.csv"  # in PRED: id,rank,inliers of each verified neighbour
VERIFICATION_HEADER = ["id", "rank", "inliers"]
SUMMARY_ORDER = ("queries", "scored", "landmark_queries", "predicted", "gap", "gap_public", "gap_private",
                 "accuracy", "top1", "top5", "right", "wrong", "missed", "distractors_answered", "failed",
                 "ignored")

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("predictions", None, "indexer.predict's output folder (submission.csv, neighbours.csv, ...)")
    flags.DEFINE_string("solution", None, "solution CSV (default: the one predict was given, if any)")
    flags.DEFINE_string("landmark_names", None, "landmark_id,name CSV, or GLDv2's landmark_id,category "
                        "(default: the one predict was given, if any)")
    flags.DEFINE_string("output", None, f"the page (default PRED/{REPORT_HTML}); thumbnails go beside it")
    flags.DEFINE_integer("neighbours", 5, "nearest references shown per query")
    flags.DEFINE_integer("matches", -1, "queries whose verified match is drawn (the most confident first; "
                         "-1: every verified query, 0: none)")
    flags.DEFINE_integer("thumb_size", report_images.THUMB_SIZE, "thumbnail size (longer side, pixels)")
    flags.DEFINE_enum("vote", "sum", METHODS, "vote for top-1/top-5, as `indexer.evaluate --vote`")
    flags.mark_flags_as_required(["predictions"])


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    predictions: str
    output: str
    solution: Optional[str] = None
    landmark_names: Optional[str] = None
    neighbours: int = 5
    matches: int = -1
    thumb_size: int = report_images.THUMB_SIZE
    vote: str = "sum"

    def __post_init__(self) -> None:
        if self.neighbours < 0 or self.matches < -1 or self.thumb_size < 16:
            raise InputError("--neighbours >= 0, --matches >= -1, --thumb_size >= 16")


@dataclasses.dataclass
class Inputs:
    """What the page is made from (all read before any picture is made)."""

    ids: List[str]  # every submission row, in order
    predictions: Dict[str, Tuple[int, float]]
    neighbours: Dict[str, List[Tuple[str, int, float]]]  # id -> [(reference id, landmark, similarity)]
    inliers: Dict[str, Dict[int, int]]  # id -> {rank from 0: inliers}
    failures: Dict[str, str]
    solution: Optional[solutions.Solution]
    names: Dict[int, str]
    predict_config: Dict


def write_verification(path: str, image_ids: List[str], inliers) -> None:
    """PRED/verification.csv: (id, rank from 1, inliers) for each verified neighbour (inliers >= 0)."""
    outputs.write_rows(path, VERIFICATION_HEADER, (
        (image_id, r + 1, int(n)) for q, image_id in enumerate(image_ids) for r, n in enumerate(inliers[q]) if n >= 0))


def read_inputs(config: ReportConfig) -> Inputs:
    """Everything the page needs from PRED and the flags; InputError naming a missing or bad file."""
    pred = config.predictions
    submission = os.path.join(pred, "submission.csv")
    if not os.path.isfile(submission):
        raise InputError(f"{pred}: no submission.csv: not an indexer.predict output folder")
    predict_config = _read_json(os.path.join(pred, "config.json"))
    ids = [row["id"] for row in outputs.unique_ids(submission, outputs.read_rows(submission, outputs.SUBMISSION_HEADER))]
    neighbours: Dict[str, List[Tuple[int, str, int, float]]] = {}
    path = os.path.join(pred, "neighbours.csv")
    if os.path.isfile(path):
        for n, row in enumerate(outputs.read_rows(path, outputs.NEIGHBOURS_HEADER), start=2):
            try:
                neighbours.setdefault(row["id"], []).append(
                    (int(row["rank"]), row["neighbour_id"], int(row["landmark_id"]), float(row["similarity"])))
            except ValueError:
                raise outputs.BadCsvError(f"{path}: row {n}: rank, landmark_id and similarity must be numbers") from None
    inliers: Dict[str, Dict[int, int]] = {}
    path = os.path.join(pred, VERIFICATION_CSV)
    if os.path.isfile(path):
        for n, row in enumerate(outputs.read_rows(path, VERIFICATION_HEADER), start=2):
            try:
                inliers.setdefault(row["id"], {})[int(row["rank"]) - 1] = int(row["inliers"])
            except ValueError:
                raise outputs.BadCsvError(f"{path}: row {n}: rank and inliers must be integers") from None
    from indexer.predict import query_records, read_failures

    solution_path = config.solution or predict_config.get("solution")
    names_path = config.landmark_names or predict_config.get("landmark_names")
    return Inputs(
        ids=ids,
        predictions=outputs.read_submission(submission),
        neighbours={i: [(r, l, s) for _, r, l, s in sorted(v)] for i, v in neighbours.items()},
        inliers=inliers,
        failures=read_failures(query_records(pred, predict_config)),
        solution=solutions.read_solution(solution_path) if solution_path else None,
        names=naming.load(names_path),
        predict_config=predict_config,
    )


def _read_json(path: str) -> Dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise InputError(f"{path}: not JSON: {e}") from None


def status(answer: Optional[Tuple[int, float]], truth, failed: bool, ignored: bool) -> str:
    """right / wrong / missed (a landmark query without answer) / distractor (a non-landmark query
    answered) / rejected (a non-landmark query without answer) / failed / ignored / answered / none
    (the last two without a solution)."""
    if failed:
        return "failed"
    if ignored:
        return "ignored"
    if truth is None:
        return "none" if answer is None else "answered"
    if not truth:
        return "rejected" if answer is None else "distractor"
    if answer is None:
        return "missed"
    return "right" if answer[0] in truth else "wrong"


def scores(inputs: Inputs, vote: str) -> Tuple[Dict, Dict[str, float]]:
    """The summary counts (as `indexer.evaluate` computes them) and each query's GAP term."""
    summary: Dict = {"queries": len(inputs.ids), "predicted": len(inputs.predictions),
                     "failed": sum(1 for i in inputs.ids if i in inputs.failures and i not in inputs.neighbours)}
    if inputs.solution is None:
        return summary, {}
    truth = inputs.solution.truth
    unknown = [i for i in inputs.ids if i not in truth and i not in inputs.solution.ignored]
    if unknown:
        raise InputError(f"{len(unknown)} submission id(s) not in the solution, e.g. {unknown[0]!r}")
    if not any(truth.values()):
        raise InputError("the solution has no query with a landmark: GAP and accuracy are undefined")
    predictions = inputs.solution.scored(inputs.predictions)
    terms = metrics.gap_terms(predictions, truth)
    summary.update(scored=len(truth), landmark_queries=sum(1 for t in truth.values() if t),
                   predicted=len(predictions), gap=metrics.gap(predictions, truth),
                   accuracy=metrics.accuracy(predictions, truth), ignored=len(inputs.solution.ignored))
    if any(inputs.solution.usage.values()):
        from indexer.evaluate import usage_gaps

        summary.update(usage_gaps(inputs.solution, predictions))
    voted = {i: [(l, s) for _, l, s in v] for i, v in inputs.neighbours.items() if i in truth}
    if voted:
        top = metrics.topk_accuracy(voted, truth, (1, 5), vote)
        summary.update(top1=top[1], top5=top[5])
    return summary, terms


def landmark_rows(inputs: Inputs, statuses: Dict[str, str], terms: Dict[str, float]) -> List[List]:
    """[landmark, 0, queries, right, answered as, wrongly answered as, GAP contribution] per
    landmark in the solution or among the answers."""
    if inputs.solution is None:
        return []
    rows: Dict[int, List] = {}

    def row(landmark: int) -> List:
        return rows.setdefault(landmark, [landmark, 0, 0, 0, 0, 0, 0.0])

    truth = inputs.solution.truth
    for image_id in inputs.ids:
        if image_id not in truth:
            continue
        for landmark in truth[image_id]:
            row(landmark)[2] += 1
        answer = inputs.predictions.get(image_id)
        if answer is not None:
            r = row(answer[0])
            r[4] += 1
            if statuses[image_id] == "right":
                r[3] += 1
                r[6] += terms.get(image_id, 0.0)
            else:
                r[5] += 1
    return [rows[k] for k in sorted(rows)]


def build_data(inputs: Inputs, config: ReportConfig, thumbs: Dict[str, report_images.Thumb],
               ref_thumbs: Dict[str, report_images.Thumb], matches: Dict[str, Tuple[int, int, List[float]]],
               thumb_dir: str) -> Dict:
    """The page's JSON (layout in indexer/evaluation/report_page.py's script)."""
    summary, terms = scores(inputs, config.vote)
    truth = inputs.solution.truth if inputs.solution else None
    ignored = inputs.solution.ignored if inputs.solution else frozenset()
    refs: List[List] = []
    ref_index: Dict[str, int] = {}
    statuses: Dict[str, str] = {}
    queries = []
    t = lambda thumb: None if thumb is None else [thumb.path, thumb.width, thumb.height]  # noqa: E731
    for image_id in inputs.ids:
        answer = inputs.predictions.get(image_id)
        failed = image_id in inputs.failures and image_id not in inputs.neighbours
        known = None if truth is None or image_id in ignored else sorted(truth[image_id])
        statuses[image_id] = status(answer, None if known is None else set(known), failed, image_id in ignored)
        shown = []
        for rank, (ref_id, landmark, sim) in enumerate(inputs.neighbours.get(image_id, [])[:config.neighbours]):
            if ref_id not in ref_index:
                ref_index[ref_id] = len(refs)
                refs.append([ref_id, landmark, t(ref_thumbs.get(ref_id))])
            shown.append([ref_index[ref_id], round(sim, 4), inputs.inliers.get(image_id, {}).get(rank, -1)])
        match = None
        if image_id in matches:
            ref_id, count, lines = matches[image_id]
            if ref_id not in ref_index:
                ref_index[ref_id] = len(refs)
                refs.append([ref_id, _ref_landmark(inputs, image_id, ref_id), t(ref_thumbs.get(ref_id))])
            match = [ref_index[ref_id], count, lines]
        queries.append([image_id, None if answer is None else answer[0],
                        None if answer is None else round(answer[1], 6), known, statuses[image_id],
                        t(thumbs.get(image_id)), shown, match, inputs.failures.get(image_id),
                        round(terms[image_id], 8) if image_id in terms else None])
    summary.update(_status_counts(statuses))
    return {"summary": summary, "summary_order": list(SUMMARY_ORDER), "thumb_dir": thumb_dir,
            "names": {str(k): v for k, v in inputs.names.items()}, "queries": queries, "refs": refs,
            "landmarks": landmark_rows(inputs, statuses, terms)}


def _ref_landmark(inputs: Inputs, image_id: str, ref_id: str) -> int:
    return next(l for r, l, _ in inputs.neighbours[image_id] if r == ref_id)


def _status_counts(statuses: Dict[str, str]) -> Dict[str, int]:
    values = list(statuses.values())
    counts = {"right": values.count("right") + values.count("rejected"), "wrong": values.count("wrong"),
              "missed": values.count("missed"), "distractors_answered": values.count("distractor")}
    return counts if any(v not in ("answered", "none", "failed") for v in values) else {}


def pictures(inputs: Inputs, config: ReportConfig, folder: str):
    """Thumbnails of the queries and the shown references, and the matches to draw (needs
    TensorFlow to read the shards; skipped with a warning for images that are not there)."""
    from indexer.embedding.embed import list_shards

    from indexer.predict import query_records

    records = query_records(config.predictions, inputs.predict_config)
    query_files = list_shards(records, ["test"])
    verified = _to_draw(inputs, config.matches)
    query_jpegs: Dict[str, bytes] = {}

    def queries():
        for image_id, jpeg in report_images.shard_images(query_files):
            if image_id in verified:
                query_jpegs[image_id] = jpeg
            yield image_id, jpeg

    thumbs = report_images.thumbnails(queries(), folder, config.thumb_size)
    if not query_files:
        logging.warning("no query records in %s: the page shows no query photos", records)
    wanted = {r for v in inputs.neighbours.values() for r, _, _ in v[:config.neighbours]} | \
             {ref for ref, _ in verified.values()}
    index_dir = inputs.predict_config.get("index_dir")
    ref_thumbs: Dict[str, report_images.Thumb] = {}
    matches: Dict[str, Tuple[str, int, List[float]]] = {}
    manifest = _manifest(index_dir)
    if manifest is not None:
        ref_files = list_shards(manifest.data_dir, manifest.splits)
        if not ref_files:
            logging.warning("reference shards in %s are gone: references shown as blanks", manifest.data_dir)
        ref_thumbs = report_images.thumbnails(report_images.shard_images(ref_files, wanted), folder, config.thumb_size)
        matches = _matches(inputs, index_dir, verified, query_jpegs, thumbs, ref_thumbs)
    return thumbs, ref_thumbs, matches


def _manifest(index_dir: Optional[str]):
    from indexer.store.index_dir import IndexIntegrityError, read_manifest

    if not index_dir or not os.path.isdir(index_dir):
        logging.warning("index folder %r not found: references shown as blanks, no matches drawn", index_dir)
        return None
    try:
        return read_manifest(index_dir)
    except (IndexIntegrityError, OSError) as e:
        logging.warning("cannot read %s's manifest (%s): references shown as blanks", index_dir, e)
        return None


def _to_draw(inputs: Inputs, limit: int) -> Dict[str, Tuple[str, int]]:
    """query id -> (reference id, inliers) of its best-verified neighbour, for the `limit` most
    confident verified queries (-1: all)."""
    best = {}
    for image_id, by_rank in inputs.inliers.items():
        rank, count = max(by_rank.items(), key=lambda kv: (kv[1], -kv[0]))
        if count > 0 and rank < len(inputs.neighbours.get(image_id, [])):
            best[image_id] = (inputs.neighbours[image_id][rank][0], count)
    if limit >= 0:
        order = sorted(best, key=lambda i: -inputs.predictions.get(i, (0, 0.0))[1])
        best = {i: best[i] for i in order[:limit]}
    return best


def _matches(inputs: Inputs, index_dir: str, verified: Dict[str, Tuple[str, int]], query_jpegs: Dict[str, bytes],
             thumbs, ref_thumbs) -> Dict[str, Tuple[str, int, List[float]]]:
    """Each verified query's inlier lines against its best neighbour, in thumbnail pixels."""
    from indexer.store.index_dir import ITEMS
    from indexer.ranking.local_features import STORE, open_store

    store_path = os.path.join(index_dir, STORE)
    drawable = {i: v for i, v in verified.items() if i in query_jpegs and i in thumbs and v[0] in ref_thumbs}
    if not drawable or not os.path.isfile(store_path):
        return {}
    items = {row["image_id"]: int(row["item"])
             for row in outputs.read_rows(os.path.join(index_dir, ITEMS), ["item", "image_id"])}
    store = open_store(store_path)
    lines = report_images.match_lines(((i, query_jpegs[i], items[ref]) for i, (ref, _) in drawable.items()
                                       if ref in items), store)
    return {i: (drawable[i][0], drawable[i][1], report_images.scaled(m, thumbs[i], ref_thumbs[drawable[i][0]]))
            for i, m in lines.items()}


def write_report(config: ReportConfig, with_pictures: bool = True) -> Dict:
    """Write the page (and its thumbnails); returns its summary counts."""
    t0 = time.perf_counter()
    inputs = read_inputs(config)
    out_dir = os.path.dirname(os.path.abspath(config.output))
    os.makedirs(out_dir, exist_ok=True)
    thumb_dir = os.path.splitext(os.path.basename(config.output))[0] + "_files"
    thumbs, ref_thumbs, matches = (pictures(inputs, config, os.path.join(out_dir, thumb_dir)) if with_pictures
                                   else ({}, {}, {}))
    data = build_data(inputs, config, thumbs, ref_thumbs, matches, thumb_dir)
    title = f"Landmark predictions: {os.path.basename(os.path.abspath(config.predictions))}"
    tmp = f"{config.output}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(report_page.render(data, title))
    os.replace(tmp, config.output)
    logging.info("report: %d answers, %d thumbnails, %d matches drawn -> %s (%.1f s)", len(data["queries"]),
                 len(thumbs) + len(ref_thumbs), len(matches), config.output, time.perf_counter() - t0)
    return data["summary"]


def main(argv) -> None:
    del argv
    console.setup(FLAGS.verbosity, tensorflow=True)
    pylogging.getLogger("PIL").setLevel(pylogging.WARNING)
    summary = write_report(ReportConfig(
        predictions=FLAGS.predictions,
        output=FLAGS.output or os.path.join(FLAGS.predictions, REPORT_HTML),
        solution=FLAGS.solution, landmark_names=FLAGS.landmark_names, neighbours=FLAGS.neighbours,
        matches=FLAGS.matches, thumb_size=FLAGS.thumb_size, vote=FLAGS.vote))
    for key in SUMMARY_ORDER:
        value = summary.get(key)
        if value is not None:
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    define_flags()
    app.run(absl_main("indexer.report", main))
