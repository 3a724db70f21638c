"""`python -m indexer.predict --index_dir=IDX (--test_csv=CSV | --images=DIR | --test_records=DIR)
--output_dir=PRED [--k] [--min_confidence] [--visualize=N] [--solution=CSV]`

1. Opens and verifies the index folder (a bad index fails here, before any work) through
   `indexer.api.Recognizer`, which also answers the queries below. With --images, lists the
   folder's photos (recursively, id = file stem) into PRED/images.csv (`id,url`), which then is
   the test CSV.
2. Runs `python -m pipelines.preprocess --split=test` on the test CSV in a subprocess (that stage
   is TF-free and cannot share this process): the same fetch/decode/resize path and failure
   reasons as the references, into --records_dir (default PRED/test_records/; gs:// too), on the
   runner its --preprocess_arg flags name (skipped on a rerun when it already finished for this
   same CSV). With --test_records=DIR, finished test records are used instead (checked first).
3. Embeds the test-* shards with the index's own model copy, queries the top k, verifies, votes:
   in this process, or (--embed_runner=beam, or auto on large inputs) as a Beam job with one work
   item per shard (indexer/embedding/beam_predict.py), resumable, merged in shard order.
4. Writes PRED/submission.csv with a row for EVERY id in the CSV (empty landmarks when the image
   failed preprocessing or the confidence is below --min_confidence), PRED/neighbours.csv (raw
   top-k), PRED/predict_stats.json (counts), PRED/config.json, PRED/verification.csv (inliers of
   each verified neighbour) when it verified, with --visualize N PRED/neighbours.png (landmark names
   from --landmark_names), and with --report PRED/report.html (indexer/report.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from absl import app, flags, logging

from indexer import outputs, report
from indexer.embedding import embed_job, image_folder
from indexer.evaluation import solutions, visualize
from indexer.ranking import scoring
from indexer.store.annoy_index import sha256_file
from indexer.api import DEFAULT_SEARCH_K, FALLBACK_IMAGE_SIZE, Recognizer
from indexer.embedding.embed import iter_jpegs, list_shards, read_jpegs
from indexer.ranking.confidence import CONFIDENCES
from indexer.store.index_dir import Index
from indexer.ranking.vote import METHODS
from pipelines.cli import cli_errors, console, flag_checks
from pipelines import shard_index
from pipelines.sources import csv_input
from pipelines.cli.cli_errors import InputError, absl_main
from pipelines.graph.report import FAILURES_CSV

FOLDER_CSV = "images.csv"  # in PRED: the --images folder as a test CSV
RECORDS_DIR = "test_records"
SHARDS_DIR = "shards"  # in PRED: the Beam prediction job's per-shard answers (default of --embed_dir)
DONE_MARKER = "predict-input.json"  # in RECORDS_DIR: which CSV the finished preprocessing was for
# Fetch settings handed on to pipelines.preprocess when given (else its own defaults apply).
PREPROCESS_FLAGS = {"fetch_timeout": flags.DEFINE_float, "fetch_retries": flags.DEFINE_integer,
                    "backoff_s": flags.DEFINE_float, "fetch_threads": flags.DEFINE_integer,
                    "max_pixels": flags.DEFINE_integer}

FLAGS = flags.FLAGS


class PreprocessingFailed(InputError, RuntimeError):
    """pipelines.preprocess exited non-zero; the message ends with its last log line."""


def define_flags() -> None:
    """The command line (defined only when run as a program, so modules import side-effect free)."""
    flags.DEFINE_string("index_dir", None, "index folder from indexer.build")
    flags.DEFINE_string("test_csv", None, "test CSV (id,url), Google-Landmarks layout")
    flags.DEFINE_string("images", None, "instead of --test_csv: a folder of photos (recursive; id = file stem)")
    flags.DEFINE_string("test_records", None, "finished test records (pipelines.preprocess --split=test output, "
                        "local or gs://) instead of preprocessing here; --test_csv then optional (its ids and "
                        "order; without it: the records' ids in shard order, then failures.csv's)")
    flags.DEFINE_string("records_dir", None, "where the test CSV is preprocessed to (default: "
                        f"<output_dir>/{RECORDS_DIR}; gs:// for a remote runner)")
    flags.DEFINE_string("output_dir", None, "where submission.csv and the rest go")
    flags.DEFINE_integer("k", 10, "neighbours per query (they vote)")
    flags.DEFINE_integer("search_k", DEFAULT_SEARCH_K, "Annoy nodes inspected per query and shard (-1: n_trees * k)")
    flags.DEFINE_float("min_confidence", 0.0, "answer 'no landmark' below this confidence")
    flags.DEFINE_enum("vote", "sum", METHODS, "how neighbours vote (indexer/ranking/vote.py)")
    flags.DEFINE_integer("visualize", 0, "draw this many queries with their neighbours into neighbours.png")
    flags.DEFINE_string("solution", None, "solution CSV: colours the picture right/wrong, scores the --report")
    flags.DEFINE_string("landmark_names", None, "landmark_id,name CSV (or GLDv2's landmark_id,category): names "
                        "the answers in neighbours.png and the --report (ids stay the submission's)")
    flags.DEFINE_boolean("report", False, "also write PRED/report.html, the error-analysis page (indexer/report.py)")
    flags.DEFINE_integer("image_size", 0, "passed to pipelines.preprocess; 0: what the references used (the "
                         f"index's manifest), {FALLBACK_IMAGE_SIZE} for an index that does not record it")
    flags.DEFINE_integer("batch_size", 64, "images per embedding batch")
    flags.DEFINE_enum("rerank", "none", scoring.RERANKS, "aqe: alpha-query expansion (indexer/ranking/rerank.py)")
    flags.DEFINE_integer("aqe_k", scoring.Scoring.aqe_k, "--rerank=aqe: neighbours added to each query")
    flags.DEFINE_float("aqe_alpha", scoring.Scoring.aqe_alpha, "--rerank=aqe: neighbour weight = similarity^alpha")
    flags.DEFINE_enum("confidence", "score", CONFIDENCES, "score: the vote's; margin: minus the runner-up's "
                      "(indexer/ranking/confidence.py)")
    flags.DEFINE_float("penalty_weight", scoring.Scoring.penalty_weight, "x each neighbour's non-landmark penalty "
                       "(index built with --nonlandmark_csv); 0 = off")
    flags.DEFINE_integer("verify_k", scoring.Scoring.verify_k, "spatially verify this many nearest neighbours "
                         "per query when the index stores local features (indexer.build --local_features); 0 = off")
    flags.DEFINE_float("verify_weight", scoring.Scoring.verify_weight, "weight of the verification in a "
                       "landmark's score (the vote's is 1)")
    flags.DEFINE_integer("verify_cap", scoring.Scoring.verify_cap, "inliers that count as a full match")
    flags.DEFINE_bool("batch_neighbours", scoring.Scoring.batch_neighbours, "search each query's k nearest "
                      "neighbours among the references and the run's other test photos; those vote for no "
                      "landmark (transductive: indexer/ranking/batch_neighbours.py)")
    embed_job.define_flags()
    for name, define in PREPROCESS_FLAGS.items():
        define(name, None, f"passed to pipelines.preprocess as --{name} (default: its own)")
    flags.DEFINE_bool("retry_failed", False, "fetch again the test images an earlier run failed for a transient "
                      "reason (timeout, connection_error, http_429, http_5xx): pipelines.preprocess --retry_failed")
    flags.DEFINE_multi_string("preprocess_arg", [], "any other flag for pipelines.preprocess, e.g. "
                              "--preprocess_arg=--direct_num_workers=4 (repeatable)")
    flags.mark_flags_as_required(["index_dir", "output_dir"])
    flags.mark_flags_as_mutual_exclusive(["test_csv", "images"])
    flags.mark_flags_as_mutual_exclusive(["images", "test_records"])


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    index_dir: str
    test_csv: Optional[str]  # None with `images`: PRED/images.csv is written from the folder
    output_dir: str
    k: int
    search_k: int
    min_confidence: float
    vote: str
    visualize: int
    solution: Optional[str]
    image_size: int
    batch_size: int
    embedding: embed_job.EmbedSettings = embed_job.EmbedSettings()
    preprocess_flags: Tuple[str, ...] = ()  # extra flags for pipelines.preprocess
    images: Optional[str] = None  # a folder of photos instead of test_csv
    rerank: str = "none"
    aqe_k: int = scoring.Scoring.aqe_k
    aqe_alpha: float = scoring.Scoring.aqe_alpha
    confidence: str = "score"
    penalty_weight: float = scoring.Scoring.penalty_weight
    verify_k: int = scoring.Scoring.verify_k
    verify_weight: float = scoring.Scoring.verify_weight
    verify_cap: int = scoring.Scoring.verify_cap
    batch_neighbours: bool = scoring.Scoring.batch_neighbours
    landmark_names: Optional[str] = None  # CSV naming the landmarks (indexer/evaluation/names.py)
    report: bool = False  # write PRED/report.html at the end (indexer/report.py)
    test_records: Optional[str] = None  # finished test records: no preprocessing here
    records_dir: Optional[str] = None  # where the test CSV is preprocessed to (None: PRED/test_records)

    def __post_init__(self) -> None:
        check_settings(self)


def check_settings(config: PredictConfig) -> None:
    """Refuse settings that would silently answer nothing (InputError naming the flag)."""
    scoring.Scoring(config.k, config.search_k, config.vote, config.rerank, config.aqe_k, config.aqe_alpha,
                    config.confidence, config.penalty_weight, config.verify_k, config.verify_weight,
                    config.verify_cap)  # its checks (pipelines/cli/flag_checks.py), as the API's
    flag_checks.number("--min_confidence", config.min_confidence)
    flag_checks.integer("--batch_size", config.batch_size, 1)
    flag_checks.integer("--image_size", config.image_size, 0)
    flag_checks.integer("--visualize", config.visualize, 0)
    if not (config.test_csv or config.images or config.test_records):
        raise flag_checks.SettingsError("one of --test_csv, --images or --test_records is required")
    if config.images and config.test_records:  # (test_csv is set from the folder once listed)
        raise flag_checks.SettingsError("--images takes no --test_records")
    if config.test_records and (config.records_dir or config.preprocess_flags):
        raise flag_checks.SettingsError("--test_records are finished records: --records_dir and the preprocessing's "
                                        "flags (--preprocess_arg, fetch flags, --retry_failed) do not apply")


def read_test_ids(path: str) -> List[str]:
    """Ids of the test CSV in order, each once, parsed exactly as the preprocessing parses them
    (BOM, header case and spaces, quoting), bad rows included: every id gets a submission row."""
    rows = csv_input.iter_csv(0, path, "test", 0.0)
    return list(dict.fromkeys(row.image_id for row in rows if row.image_id))


def read_failures(records_dir: str) -> Dict[str, str]:
    """id -> reason from the preprocessing's failures.csv (empty when there is none; local or gs://)."""
    path = os.path.join(records_dir, FAILURES_CSV)
    if "://" in path:  # a remote folder: read through a local copy, as strictly
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            return {}
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, FAILURES_CSV)
            tf.io.gfile.copy(path, local)
            return {row["id"]: row["reason"] for row in outputs.read_rows(local, ["id", "reason"])}
    if not os.path.isfile(path):
        return {}
    return {row["id"]: row["reason"] for row in outputs.read_rows(path, ["id", "reason"])}


def records_folder(config: PredictConfig) -> str:
    """Where the test CSV is preprocessed to."""
    return config.records_dir or os.path.join(config.output_dir, RECORDS_DIR)


def query_records(pred: str, saved_config: Dict) -> str:
    """The test records folder a finished prediction in `pred` read, from its config.json (for the report)."""
    return saved_config.get("test_records") or saved_config.get("records_dir") or os.path.join(pred, RECORDS_DIR)


def input_marker(config: PredictConfig) -> Dict:
    """What RECORDS_DIR/DONE_MARKER holds once preprocessing finished for this CSV and size."""
    return {"csv": os.path.abspath(config.test_csv), "sha256": sha256_file(config.test_csv),
            "image_size": config.image_size}


def check_test_records(records: str, image_size: int) -> List[str]:
    """The test shards of a finished `pipelines.preprocess --split=test` folder (local or gs://),
    sorted; InputError in one line when it is missing, not a folder, unfinished, holds another
    split, lacks a shard its shard_index.json lists, or was stored at another image size."""
    import tensorflow as tf

    if not tf.io.gfile.exists(records):
        raise InputError(f"--test_records={records}: no such folder")
    if not tf.io.gfile.isdir(records):
        raise InputError(f"--test_records={records}: not a folder (give the preprocessing's --output_dir)")
    index_path = os.path.join(records, shard_index.FILE)
    if not tf.io.gfile.exists(index_path):
        raise InputError(f"--test_records={records}: no {shard_index.FILE}: not a finished pipelines.preprocess "
                         f"output (rerun it to the end)")
    try:
        with tf.io.gfile.GFile(index_path, "rb") as f:
            made = shard_index.parse(f.read())
    except ValueError as err:
        raise InputError(f"--test_records={records}: {cli_errors.one_line(err)}") from None
    others = sorted(set(made.splits) - {"test"})
    if others or "test" not in made.splits:
        raise InputError(f"--test_records={records} holds {'/'.join(others) or 'no'} records, not test records "
                         f"(preprocess the test CSV with --split=test)")
    files = list_shards(records, ["test"])
    missing = sorted(set(made.splits["test"].shards) - {os.path.basename(p) for p in files})
    if missing:
        raise InputError(f"--test_records={records}: {missing[0]} is listed in {shard_index.FILE} but missing")
    if made.image_size != image_size:
        raise InputError(f"--test_records={records}: stored at {made.image_size} px, this prediction needs {image_size} "
                         f"px (the references' size unless --image_size says otherwise)")
    return files




def preprocess_test(config: PredictConfig) -> str:
    """Run pipelines.preprocess on the test CSV in a subprocess, unless it already finished for
    this CSV and image size (or `--retry_failed` is among the stage's flags); return the records
    folder. A folder left by an interrupted run is handed back to the stage, which resumes it
    (`--overwrite`: this folder is predict's own, whichever CSV it last held); one finished for
    another CSV is started over. The stage runs on whatever runner its flags name
    (`--preprocess_arg=--runner=dask ...`); the folder may be gs://."""
    import tensorflow as tf

    records = records_folder(config)
    marker = os.path.join(records, DONE_MARKER)
    wanted = input_marker(config)
    if tf.io.gfile.exists(marker):
        with tf.io.gfile.GFile(marker) as f:
            same = json.load(f) == wanted
        if same and "--retry_failed" not in config.preprocess_flags:  # a retry reruns the stage on it
            logging.info("test images already preprocessed in %s", records)
            return records
        if not same:
            logging.info("%s holds another CSV's images: starting it over", records)
            tf.io.gfile.rmtree(records)
    cmd = [sys.executable, "-m", "pipelines.preprocess", f"--csv={config.test_csv}", f"--output_dir={records}",
           "--split=test", f"--image_size={config.image_size}", "--overwrite", *config.preprocess_flags]
    log_path = os.path.join(config.output_dir, "preprocess.log")
    logging.info("running %s (log: %s)", " ".join(cmd), log_path)
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        with open(log_path) as log:
            last = ([line.strip() for line in log if line.strip()] or ["(empty log)"])[-1]
        raise PreprocessingFailed(f"{config.test_csv}: pipelines.preprocess exited with {rc} (log: {log_path}): {last}")
    if "://" in marker:
        with tf.io.gfile.GFile(marker, "w") as f:
            f.write(json.dumps(wanted, indent=2))
    else:
        outputs.write_json(marker, wanted)
    return records


def scoring_options(config: PredictConfig) -> Dict:
    """`Recognizer.open`'s query settings from this run's flags (the in-process path and the workers')."""
    return dict(k=config.k, search_k=config.search_k, vote_method=config.vote, rerank=config.rerank,
                aqe_k=config.aqe_k, aqe_alpha=config.aqe_alpha, confidence=config.confidence,
                penalty_weight=config.penalty_weight, verify_k=config.verify_k, verify_weight=config.verify_weight,
                verify_cap=config.verify_cap, batch_neighbours=config.batch_neighbours)


def query_settings(config: PredictConfig):
    """What the Beam job's workers open the index with (config.image_size already resolved)."""
    from indexer.embedding.beam_predict import QuerySettings

    return QuerySettings(os.path.abspath(config.index_dir) if "://" not in config.index_dir else config.index_dir,
                         config.image_size, config.batch_size, tuple(sorted(scoring_options(config).items())))


def open_recognizer(config: PredictConfig) -> Recognizer:
    """The index and model, opened and verified once, with this run's query settings."""
    return Recognizer.open(config.index_dir, min_confidence=config.min_confidence, image_size=config.image_size,
                           progress=True, landmark_names=config.landmark_names, **scoring_options(config))


def predict(config: PredictConfig) -> Dict:
    """The whole prediction; returns the counts also written to predict_stats.json."""
    flag_checks.output_dir(config.output_dir)
    outputs.write_json(os.path.join(config.output_dir, "config.json"), dataclasses.asdict(config))
    recognizer = open_recognizer(config)
    index = recognizer.index
    if config.images:
        folder_csv = os.path.join(config.output_dir, FOLDER_CSV)
        logging.info("%d photos in %s listed in %s", image_folder.write_folder_csv(config.images, folder_csv),
                     config.images, folder_csv)
        config = dataclasses.replace(config, test_csv=folder_csv)
    if not config.image_size:  # the test images are stored like the references
        config = dataclasses.replace(config, image_size=recognizer.image_config.image_size)

    if config.test_records:
        records = config.test_records
        files = check_test_records(records, config.image_size)
        test_ids = read_test_ids(config.test_csv) if config.test_csv else None  # None: from the answers
    else:
        test_ids = read_test_ids(config.test_csv)
        records = preprocess_test(config)
        files = list_shards(records, ["test"])
    t0 = time.perf_counter()
    if files and embed_job.choose(config.embedding, files) == "beam":
        from indexer.embedding import beam_predict  # Beam is imported only when used

        embedding = config.embedding
        image_ids, answers = beam_predict.predict_with_beam(
            files, query_settings(config), embedding.embed_dir or os.path.join(config.output_dir, SHARDS_DIR),
            embedding.beam_args, embedding.dask_address, embedding.dask_workers)
        logging.info("embedded, queried and verified %d test images in %.1f s", len(image_ids),
                     time.perf_counter() - t0)
    else:
        embedded = recognizer.embed_records(files, config.batch_size)
        image_ids = embedded.image_ids
        answers = recognizer.answer(embedded.vectors)
        logging.info("embedded and queried %d test images in %.1f s", len(image_ids), time.perf_counter() - t0)
        if recognizer.verifies:
            by_id = {image_id: q for q, image_id in enumerate(image_ids)}
            t0 = time.perf_counter()
            answers = recognizer.verify(answers, ((by_id[i], jpeg) for i, jpeg in iter_jpegs(files) if i in by_id))
            logging.info("spatially verified %d test images in %.1f s", len(by_id), time.perf_counter() - t0)
    if config.batch_neighbours:
        answers = recognizer.batch_vote(answers)
    by_id = {image_id: q for q, image_id in enumerate(image_ids)}
    items, sims, votes = answers.items, answers.similarities, answers.votes

    failures = read_failures(records)
    if test_ids is None:  # records without a CSV: their ids in shard order, then the failed ones (sorted)
        test_ids = list(dict.fromkeys([*image_ids, *sorted(failures)]))
    unexpected = set(by_id) - set(test_ids)
    if unexpected:
        raise InputError(f"{records} holds ids not in {config.test_csv}, e.g. {sorted(unexpected)[0]!r}: "
                         f"a stale records folder? delete it and rerun")
    rows = []
    stats = {"test_ids": len(test_ids), "embedded": len(by_id), "failed": 0, "missing": 0,
             "below_min_confidence": 0, "predicted": 0}
    for image_id in test_ids:
        q = by_id.get(image_id)
        prediction = None if q is None else votes[q]
        if q is None:
            stats["failed" if image_id in failures else "missing"] += 1
        elif prediction is not None and not recognizer.accepted(prediction):
            stats["below_min_confidence"] += 1
            prediction = None
        stats["predicted"] += prediction is not None
        rows.append((image_id, prediction))
    if answers.slots is not None:  # --batch_neighbours: queries that gave voting places to other photos
        stats["votes_shared_with_batch"] = int((answers.slots < config.k).sum())
    if stats["missing"]:
        logging.warning("%d test ids are neither in the records nor in failures.csv", stats["missing"])
    outputs.write_submission(os.path.join(config.output_dir, "submission.csv"), rows)
    outputs.write_neighbours(os.path.join(config.output_dir, "neighbours.csv"), (
        (image_id, r + 1, index.image_ids[item], int(index.landmark_ids[item]), float(sims[q, r]))
        for q, image_id in enumerate(image_ids)
        for r, item in enumerate(items[q]) if item >= 0
    ))
    if answers.inliers is not None:
        report.write_verification(os.path.join(config.output_dir, report.VERIFICATION_CSV), image_ids,
                                  answers.inliers)
    if config.visualize > 0 and image_ids:
        draw(index, image_ids, files, items, sims, dict(rows), config, recognizer.names)
    outputs.write_json(os.path.join(config.output_dir, "predict_stats.json"), stats)
    logging.info("predict: %s", stats)
    if config.report:
        report.write_report(report.ReportConfig(predictions=config.output_dir,
                                                output=os.path.join(config.output_dir, report.REPORT_HTML)))
    return stats


def draw(index: Index, image_ids: List[str], files: List[str], items: np.ndarray, sims: np.ndarray,
         answers: Dict[str, Optional[Tuple[int, float]]], config: PredictConfig, names: Dict[int, str],
         per_row: int = 5) -> None:
    """neighbours.png: the first --visualize embedded queries and their nearest references."""
    shown = list(range(min(config.visualize, len(image_ids))))
    query_ids = [image_ids[q] for q in shown]
    queries = read_jpegs(files, query_ids)
    ref_items = {int(i) for q in shown for i in items[q, :per_row] if i >= 0}
    ref_files = list_shards(index.manifest.data_dir, index.manifest.splits)
    refs = read_jpegs(ref_files, [index.image_ids[i] for i in ref_items]) if ref_files else {}
    if not ref_files:
        logging.warning("reference shards in %s are gone: neighbours drawn as blanks", index.manifest.data_dir)
    solution = solutions.read_solution(config.solution).truth if config.solution else {}
    rows = [
        visualize.query_row(
            image_id, queries.get(image_id), answers[image_id],
            solution.get(image_id),
            [(refs.get(index.image_ids[i]), int(index.landmark_ids[i]), float(s))
             for i, s in zip(items[q, :per_row], sims[q, :per_row]) if i >= 0],
            names,
        )
        for q, image_id in zip(shown, query_ids)
    ]
    visualize.draw_grid(rows, os.path.join(config.output_dir, "neighbours.png"))


def main(argv) -> None:
    console.setup(FLAGS.verbosity, tensorflow=True)
    predict(PredictConfig(
        index_dir=FLAGS.index_dir,
        test_csv=FLAGS.test_csv,
        images=FLAGS.images,
        output_dir=FLAGS.output_dir,
        k=FLAGS.k,
        search_k=FLAGS.search_k,
        min_confidence=FLAGS.min_confidence,
        vote=FLAGS.vote,
        visualize=FLAGS.visualize,
        solution=FLAGS.solution,
        image_size=FLAGS.image_size,
        batch_size=FLAGS.batch_size,
        embedding=embed_job.settings_from_flags(argv),
        preprocess_flags=(*(f"--{name}={FLAGS[name].value}" for name in PREPROCESS_FLAGS
                            if FLAGS[name].value is not None), *FLAGS.preprocess_arg,
                          *(["--retry_failed"] if FLAGS.retry_failed else [])),
        rerank=FLAGS.rerank,
        aqe_k=FLAGS.aqe_k,
        aqe_alpha=FLAGS.aqe_alpha,
        confidence=FLAGS.confidence,
        penalty_weight=FLAGS.penalty_weight,
        verify_k=FLAGS.verify_k,
        verify_weight=FLAGS.verify_weight,
        verify_cap=FLAGS.verify_cap,
        batch_neighbours=FLAGS.batch_neighbours,
        landmark_names=FLAGS.landmark_names,
        report=FLAGS.report,
        test_records=FLAGS.test_records,
        records_dir=FLAGS.records_dir,
    ))


if __name__ == "__main__":
    define_flags()
    app.run(absl_main("indexer.predict", main), flags_parser=embed_job.parse_flags)
