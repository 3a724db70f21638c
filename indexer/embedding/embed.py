"""Load an exported embedding model (trainer/contract.py) and embed TFRecord shards with it.

The SavedModel's `serving_default` signature takes encoded image bytes and does its own
evaluation preprocessing, so indexing and prediction feed it exactly the JPEG bytes the Beam
stage stored, in batches from `tf.data`, and get unit-length float32 embeddings back.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from indexer.store.annoy_index import sha256_file
from pipelines import schema
from pipelines.cli import console
from trainer import contract
from trainer.input import shard_check


@dataclasses.dataclass(frozen=True)
class Embedded:
    """Embeddings of a set of records, row i belonging to `image_ids[i]`."""

    image_ids: List[str]
    landmark_ids: np.ndarray  # int64 [N]
    vectors: np.ndarray  # float32 [N, D]


def model_fingerprint(export_dir: str) -> str:
    """sha256 over the SavedModel's files and export.json (relative names and bytes, sorted), so
    an index can say which model built it and prediction can refuse another one."""
    digest = hashlib.sha256()
    names = [contract.EXPORT_INFO] + sorted(
        os.path.relpath(p, export_dir)
        for p in glob.glob(os.path.join(export_dir, contract.SAVED_MODEL_DIR, "**"), recursive=True)
        if os.path.isfile(p)
    )
    for name in names:
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(bytes.fromhex(sha256_file(os.path.join(export_dir, name))))  # in chunks: variables can be large
    return digest.hexdigest()


def read_export_info(export_dir: str) -> Dict:
    """The export's export.json (embedding_dim, image_size, backbone, ...)."""
    path = os.path.join(export_dir, contract.EXPORT_INFO)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{export_dir} is not a model export: no {contract.EXPORT_INFO} (trainer/contract.py)")
    with open(path) as f:
        return json.load(f)


def check_export(export_dir: str) -> Dict:
    """export.json of `export_dir`, or a clear FileNotFoundError when it is not a model export."""
    if not os.path.isdir(os.path.join(export_dir, contract.SAVED_MODEL_DIR)):
        raise FileNotFoundError(
            f"{export_dir} is not a model export: no {contract.SAVED_MODEL_DIR}/ (trainer/contract.py)"
        )
    return read_export_info(export_dir)


class Embedder:
    """The export's serving signatures plus what export.json says about it."""

    def __init__(self, export_dir: str) -> None:
        import tensorflow as tf

        model_path = os.path.join(export_dir, contract.SAVED_MODEL_DIR)
        self.export_dir = export_dir
        self.info = check_export(export_dir)
        self.dimension = int(self.info["embedding_dim"])
        self.image_size = int(self.info["image_size"])  # the training size S (serving_default's)
        self._model = tf.saved_model.load(model_path)  # keeps the signatures' variables alive
        self._signature = self._model.signatures[contract.SIGNATURE]
        self._sized = self._model.signatures.get(contract.SIZED_SIGNATURE)  # None: exported before contract 2

    def __call__(self, image_bytes) -> np.ndarray:
        """Embeddings [N, D] of a batch of encoded images (a tf.string tensor or list of bytes)."""
        import tensorflow as tf

        out = self._signature(**{contract.INPUT_KEY: tf.convert_to_tensor(image_bytes, tf.string)})
        return self._checked(out[contract.OUTPUT_KEY])

    def sized(self, image_bytes, size: int) -> np.ndarray:
        """Embeddings [N, D] with the images resized to `size` x `size` (`serving_sized`); a one-line
        SettingsError when the export has no such signature."""
        import tensorflow as tf

        if self._sized is None:
            from indexer.embedding import tta

            raise tta.reexport_error(tta.MULTISCALE, self.export_dir, contract.contract_version(self.info))
        out = self._sized(**{contract.INPUT_KEY: tf.convert_to_tensor(image_bytes, tf.string),
                             contract.SIZE_KEY: tf.constant(int(size), tf.int32)})
        return self._checked(out[contract.OUTPUT_KEY])

    def _checked(self, tensor) -> np.ndarray:
        vectors = tensor.numpy().astype(np.float32, copy=False)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"model returned shape {vectors.shape}, export.json says dimension {self.dimension}")
        if not np.isfinite(vectors).all():
            raise ValueError("model returned NaN or inf embeddings")
        return vectors


def list_shards(directory: str, splits: Sequence[str]) -> List[str]:
    """Final shard files of the given splits in `directory` (local or gs://), sorted: a fixed
    item order. Empty when there are none."""
    import tensorflow as tf

    return sorted(p for split in splits for p in tf.io.gfile.glob(schema.shard_pattern(directory, split)))


def _batches(files: Sequence[str], batch_size: int, skip_corrupt: bool = False, per_shard: bool = False):
    """Batches of parsed records over `files` in order; `per_shard`: no batch spans two shards, so
    each shard is batched exactly as when it is embedded alone (the per-shard prediction job)."""
    import tensorflow as tf

    if per_shard:
        read = shard_check.reader(skip_corrupt)
        batches = tf.data.Dataset.from_tensor_slices(list(files)).flat_map(lambda f: read(f).batch(batch_size))
    else:
        records = (tf.data.Dataset.from_tensor_slices(list(files)).flat_map(shard_check.reader(True)) if skip_corrupt
                   else tf.data.TFRecordDataset(list(files)))
        batches = records.batch(batch_size)
    return (
        batches
        .map(schema.tf_parse, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def expected_records(directory: str, splits: Sequence[str]) -> Optional[int]:
    """How many records the preprocessing wrote for `splits` (its stats.json), for progress ETAs;
    None when it cannot say."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(os.path.join(directory, "stats.json")) as f:
            written = json.load(f)["written_by_split"]
        return sum(int(written.get(split, 0)) for split in splits)
    except (tf.errors.OpError, OSError, ValueError, KeyError, TypeError):
        return None


def embed_records(files: Sequence[str], embedder: Embedder, batch_size: int = 64, tta: str = "none",
                  skip_corrupt: bool = False, progress: Optional[console.Progress] = None,
                  on_images: Optional[Callable[[Sequence[bytes]], None]] = None, per_shard: bool = False) -> Embedded:
    """Embed every record of `files`, in file order (empty arrays when there are none); `tta`:
    test-time augmentation (indexer/embedding/tta.py); counts the images on `progress` when given;
    `on_images` gets each batch's encoded images, in order, the bytes just embedded (the Beam job
    extracts their local features in the same pass). A damaged
    shard raises `shard_check.CorruptShardError` naming it; with `skip_corrupt` each shard ends at
    its first damaged record instead (see shard_check.scan_all for the count). `per_shard`: batches
    never span two shards (a model's output can differ in the last bits with the batch's size, so
    this is how a shard's vectors equal those of the shard embedded alone)."""
    import tensorflow as tf

    from indexer.embedding import tta as augment

    ids: List[str] = []
    landmarks: List[np.ndarray] = []
    vectors: List[np.ndarray] = []
    try:
        for batch in _batches(files, batch_size, skip_corrupt, per_shard):
            vectors.append(augment.embed(embedder, batch[schema.ENCODED], tta))
            if on_images is not None:
                on_images(batch[schema.ENCODED].numpy().tolist())
            ids.extend(x.decode("utf-8") for x in batch[schema.ID].numpy())
            landmarks.append(batch[schema.LANDMARK_ID].numpy().astype(np.int64))
            if progress is not None:
                progress.update(len(vectors[-1]))
    except tf.errors.DataLossError as err:  # names no file: find the shard
        damaged = shard_check.locate(files, err)
        if damaged is None:
            raise
        raise damaged from err
    if not ids:
        return Embedded([], np.zeros(0, np.int64), np.zeros((0, embedder.dimension), np.float32))
    return Embedded(ids, np.concatenate(landmarks), np.concatenate(vectors))


def iter_jpegs(files: Sequence[str], skip_corrupt: bool = False) -> Iterator[Tuple[str, bytes]]:
    """(id, encoded image) of every record of `files`, in file order, streamed (flat memory);
    `skip_corrupt` ends each shard at its first damaged record, as `embed_records` does."""
    for batch in _batches(files, 256, skip_corrupt):
        for image_id, jpeg in zip(batch[schema.ID].numpy(), batch[schema.ENCODED].numpy()):
            yield image_id.decode("utf-8"), jpeg


def read_jpegs(files: Sequence[str], wanted: Iterable[str]) -> Dict[str, bytes]:
    """Encoded images of the `wanted` ids found in `files` (for pictures; stops once all found)."""
    wanted = set(wanted)
    found: Dict[str, bytes] = {}
    if not wanted:
        return found
    for image_id, jpeg in iter_jpegs(files):
        if image_id in wanted:
            found[image_id] = jpeg
            if len(found) == len(wanted):
                break
    return found
