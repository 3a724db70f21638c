"""Use a built index from Python: open it once, then ask as often as you like.

    from indexer.api import Recognizer

    recognizer = Recognizer.open("out/index")          # verifies the folder, loads model + Annoy
    for p in recognizer.predict("photos/"):            # a folder, a path, JPEG bytes, or a list
        print(p.image_id, p.landmark, p.confidence, p.neighbours[0])

An image goes through the same decode/resize/encode as the preprocessing stage
(`pipelines.images.image.process_image`), so a photo gets the same embedding here as it would through
`indexer.predict`, which uses this class for everything after its Beam preprocessing step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from indexer.embedding.embed import Embedded, Embedder, embed_records, expected_records, read_export_info
from indexer.embedding.image_folder import FolderError, list_images
from indexer.store.index_dir import MODEL_DIR, Index, open_index
from indexer.evaluation import names as naming
from indexer.ranking import scoring
from indexer.embedding import tta as augment
from indexer.ranking.vote import METHODS
from pipelines.cli import console, flag_checks
from pipelines.images import image
from pipelines.sources import bounded_read, fetch
from pipelines.images.errors import RowFailure

# bench/bench_index.py, 1M x 256: with 50 trees, recall@10 0.98 at 2000 against 0.85 at Annoy's
# default (n_trees * k = 500), still far faster than exact search (docs/index.md).
DEFAULT_SEARCH_K = scoring.Scoring.search_k
QUERY_CHUNK = 1024  # queries per Annoy call, between progress updates
FALLBACK_IMAGE_SIZE = 256  # make preprocess's default, for indexes built before the size was recorded

ImageInput = Union[bytes, str, os.PathLike]


@dataclasses.dataclass(frozen=True)
class Neighbour:
    """One reference image near the query."""

    image_id: str
    landmark_id: int
    similarity: float  # cosine


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The answer for one image. `landmark` is None for "no landmark": no neighbour, a confidence
    below `min_confidence`, or an image that could not be read (`error` then holds the reason,
    one of `pipelines.images.errors.REASONS`)."""

    image_id: str
    landmark: Optional[int]
    confidence: float
    neighbours: Tuple[Neighbour, ...]
    error: Optional[str] = None
    name: Optional[str] = None  # the landmark's name, when the recognizer was given names (indexer/evaluation/names.py)


@dataclasses.dataclass(frozen=True)
class Answers:
    """Raw answers for a batch of query vectors: neighbour items [Q, k] (-1 = none),
    similarities [Q, k], each query's vote (landmark, confidence) or None, and after spatial
    verification each neighbour's inlier count."""

    items: np.ndarray
    similarities: np.ndarray
    votes: List[Optional[Tuple[int, float]]]
    inliers: Optional[np.ndarray] = None  # int32 [Q, k] after `verify` (-1: not verified)
    vectors: Optional[np.ndarray] = None  # float32 [Q, D]: the query vectors (for `batch_vote`)
    slots: Optional[np.ndarray] = None  # int64 [Q] after `batch_vote`: each query's neighbours that vote


class Recognizer:
    """An opened index plus its model: embeds images and answers with the neighbours' vote."""

    def __init__(self, index: Index, embedder: Embedder, options: scoring.Scoring = scoring.Scoring(),
                 min_confidence: float = 0.0, image_size: int = 256, progress: bool = False,
                 names: Optional[naming.Names] = None) -> None:
        if options.vote not in METHODS:
            raise flag_checks.SettingsError(f"--vote={options.vote}: expected one of {METHODS}")
        flag_checks.number("--min_confidence", min_confidence)
        flag_checks.integer("--image_size", image_size, 1)
        self.index = index
        self.embedder = embedder
        self.options = options  # k, search_k, vote, re-ranking, confidence (indexer/ranking/scoring.py)
        self.min_confidence = min_confidence
        self.image_config = image.ImageConfig(image_size=image_size)
        self.progress = progress  # report images embedded and queries answered (the CLI does)
        self.names = dict(names or {})  # landmark id -> name, for Prediction.name

    @classmethod
    def open(cls, index_dir: str, k: int = 10, search_k: int = DEFAULT_SEARCH_K, vote_method: str = "sum",
             min_confidence: float = 0.0, image_size: int = 0, progress: bool = False,
             landmark_names: Optional[str] = None, **options) -> "Recognizer":
        """Verify and load an index folder (`indexer.build`'s output) and its model copy; raises
        `IndexIntegrityError` on a damaged folder before Annoy maps anything. `image_size=0`:
        photos are stored like the references were (the index's manifest records it).
        `landmark_names`: a `landmark_id,name` (or GLDv2 `landmark_id,category`) CSV that names
        the answers (`Prediction.name`; indexer/evaluation/names.py), read before the index. `options`:
        re-ranking, confidence and verification (`rerank`, `aqe_k`, `aqe_alpha`, `confidence`,
        `penalty_weight`, `verify_k`, `verify_weight`, `verify_cap`, `batch_neighbours`:
        indexer/ranking/scoring.py)."""
        settings = scoring.Scoring(k, search_k, vote_method, **options)
        names = naming.load(landmark_names)
        model_dim = int(read_export_info(os.path.join(index_dir, MODEL_DIR))["embedding_dim"])
        index = open_index(index_dir, dimension=model_dim)
        image_size = image_size or index.manifest.reference_image_size or FALLBACK_IMAGE_SIZE
        return cls(index, Embedder(index.model_dir), settings, min_confidence, image_size, progress, names)

    def answer(self, vectors: np.ndarray) -> Answers:
        """Top-k neighbours of each query vector (re-ranked and penalised as the options say) and
        their vote, in chunks between progress updates."""
        if not self.progress or not len(vectors):
            return Answers(*scoring.answer(self.index, vectors, self.options), vectors=vectors)
        parts = []
        with console.Progress("queries answered", len(vectors), "query") as progress:
            for start in range(0, len(vectors), QUERY_CHUNK):
                parts.append(scoring.answer(self.index, vectors[start:start + QUERY_CHUNK], self.options))
                progress.update(len(parts[-1][0]))
        return Answers(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                       [v for p in parts for v in p[2]], vectors=vectors)

    def batch_vote(self, answers: Answers) -> Answers:
        """`answers` voted again with the batch's other queries among each query's k nearest
        neighbours, as neighbours that show no known landmark (indexer/ranking/batch_neighbours.py);
        needs the query vectors (`answers.vectors`); spatial verification, when run, still counts."""
        if answers.vectors is None:
            raise ValueError("batch_vote needs the answers' query vectors")
        slots = scoring.batch_slots(self.index, answers.items, answers.similarities, answers.vectors, self.options)
        votes = scoring.votes(self.index, answers.items, answers.similarities, self.options, answers.inliers, slots)
        return dataclasses.replace(answers, votes=votes, slots=slots)

    @property
    def verifies(self) -> bool:
        """Whether answers get spatially verified (the index stores local features, verify_k > 0)."""
        return scoring.verifies(self.index, self.options)

    def verify(self, answers: Answers, images: Iterable[Tuple[int, bytes]]) -> Answers:
        """`answers` with each given query (row q, its encoded image as stored) checked against its
        first verify_k neighbours (indexer/ranking/verify.py) and its vote decided again; the neighbours
        and similarities stay as they were."""
        with contextlib.ExitStack() as stack:
            progress = stack.enter_context(console.Progress("queries verified", len(answers.votes), "query")) \
                if self.progress else None
            inliers = scoring.neighbour_inliers(self.index, answers.items, images, self.options, progress=progress)
        votes = scoring.votes(self.index, answers.items, answers.similarities, self.options, inliers)
        return dataclasses.replace(answers, votes=votes, inliers=inliers)

    def embed_records(self, files: Sequence[str], batch_size: int = 64) -> Embedded:
        """Embeddings of every record in preprocessed TFRecord shards (what `indexer.predict` feeds),
        batched shard by shard, as the per-shard prediction job batches them (so both give the same
        vectors to the last bit)."""
        tta = self.index.manifest.tta  # queries are embedded as the references were
        if not self.progress or not files:
            return embed_records(files, self.embedder, batch_size, tta, per_shard=True)
        total = expected_records(os.path.dirname(files[0]), ["test"])
        with console.Progress("images embedded", total, "img") as progress:
            return embed_records(files, self.embedder, batch_size, tta, progress=progress, per_shard=True)

    def neighbours(self, answers: Answers, q: int) -> Tuple[Neighbour, ...]:
        """Query `q`'s neighbours, nearest first."""
        return tuple(
            Neighbour(self.index.image_ids[item], int(self.index.landmark_ids[item]), float(sim))
            for item, sim in zip(answers.items[q], answers.similarities[q]) if item >= 0
        )

    def accepted(self, prediction: Optional[Tuple[int, float]]) -> bool:
        """Whether a vote is an answer (it exists and reaches `min_confidence`)."""
        return prediction is not None and prediction[1] >= self.min_confidence

    def predict(self, images: Union[ImageInput, Iterable[ImageInput]], batch_size: int = 64) -> List[Prediction]:
        """Predictions for JPEG (or PNG, WebP, ...) bytes, an image path, a folder of photos
        (recursively; ids = file stems), or a list of those, in input order. A file that cannot be
        read or decoded gets a Prediction with `error` set; nothing raises per image."""
        named = _named_inputs(images)
        prepared: List[Tuple[str, Optional[bytes], Optional[str]]] = []
        for image_id, source in named:
            try:
                data = source if isinstance(source, bytes) else _read_file(source)
                jpeg, _, _ = image.process_image(data, self.image_config)
                prepared.append((image_id, jpeg, None))
            except RowFailure as f:
                prepared.append((image_id, None, f.reason))
        good = [(i, jpeg) for i, jpeg, _ in prepared if jpeg is not None]
        vectors = [augment.embed(self.embedder, [jpeg for _, jpeg in good[s:s + batch_size]], self.index.manifest.tta)
                   for s in range(0, len(good), batch_size)]
        answers = self.answer(np.concatenate(vectors) if vectors else np.zeros((0, self.embedder.dimension), np.float32))
        if self.verifies:
            answers = self.verify(answers, ((q, jpeg) for q, (_, jpeg) in enumerate(good)))
        if self.options.batch_neighbours:  # this call's photos are the batch
            answers = self.batch_vote(answers)
        row = {image_id: q for q, (image_id, _) in enumerate(good)}
        out = []
        for image_id, _, error in prepared:
            if error is not None:
                out.append(Prediction(image_id, None, 0.0, (), error))
                continue
            q = row[image_id]
            winner = answers.votes[q]
            landmark = winner[0] if self.accepted(winner) else None
            out.append(Prediction(image_id, landmark, winner[1] if winner else 0.0, self.neighbours(answers, q),
                                  name=self.names.get(landmark) if landmark is not None else None))
        return out


def _read_file(path: Union[str, os.PathLike]) -> bytes:
    """A local photo, read as the preprocessing reads one: regular files only (a FIFO or a device
    fails as `not_a_file` instead of blocking or filling memory), size- and time-capped."""
    cfg = fetch.FetchConfig()
    return bounded_read.read_local(os.fspath(path), cfg.max_bytes, 4 * cfg.timeout_s)


def _named_inputs(images) -> List[Tuple[str, Union[bytes, str]]]:
    """(id, bytes or file path) for every image the caller gave; bytes are named `bytes-<n>`."""
    if isinstance(images, (bytes, str, os.PathLike)):
        images = [images]
    named: List[Tuple[str, Union[bytes, str]]] = []
    for item in images:
        if isinstance(item, bytes):
            named.append((f"bytes-{len(named)}", item))
        elif os.path.isdir(item):
            named.extend(list_images(os.fspath(item)))
        else:
            path = os.fspath(item)
            named.append((os.path.splitext(os.path.basename(path))[0], path))
    ids = [i for i, _ in named]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise FolderError(f"two inputs would share the id {dup!r}: give distinct file names")
    return named
