"""The index folder: everything prediction needs, committed atomically by its manifest.

    IDX/manifest.json              written last: dimension, metric, counts, n_trees, model
                                   fingerprint, and the size + sha256 of every file below
    IDX/index-SSSSS-of-NNNNN.ann   the Annoy shards (sharded.py)
    IDX/items.csv                  item,image_id,landmark_id (global item number -> reference image)
    IDX/model/                     a copy of the export (saved_model/ + export.json) that built it
    IDX/config.json                the build's flags (build.py)
    IDX/penalties.npy              optional per-reference arrays (`extras`, e.g. the non-landmark
                                   penalty of indexer/ranking/confidence.py), float32 [n_items] each
    IDX/local_features.npy         optional: each reference's SIFT features for spatial
                                   verification (indexer/ranking/local_features.py), memory-mapped;
                                   the manifest also records the sha256 of each segment (the
                                   references of one input shard)

A build writes into IDX/.staging-PID/, then removes the old manifest, moves the new files in and
writes the new manifest. A crash at any point leaves either a complete index or no manifest, and
`open_index` refuses a folder without one (or with any file that does not match it) with
`IndexIntegrityError`, before Annoy maps anything.

Every file is checked against its size and sha256 at open, except the local-feature store (42 GB
at 1.2M references and 256 features): its size and header at open, each segment's sha256 the first
time a record of it is read (a damaged segment then raises `IndexIntegrityError`), and all of them
at open with `open_index(..., verify_features=True)` (`python -m indexer.store.verify_index IDX`).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import shutil
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from indexer.store.annoy_index import METRIC, FileRecord, IndexIntegrityError, sha256_file
from indexer.ranking import local_features
from indexer.embedding.tta import MODES as TTA_MODES
from indexer.embedding.embed import Embedded, model_fingerprint
from indexer.store.sharded import ShardedIndex, build_sharded
from pipelines.cli import cli_errors
from trainer import contract

MANIFEST = "manifest.json"
ITEMS = "items.csv"
MODEL_DIR = "model"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What an index folder holds; `open_index` checks every file against it."""

    dimension: int
    metric: str
    n_items: int
    n_trees: int
    model_fingerprint: str
    data_dir: str  # where the reference shards were (pictures of neighbours read them if present)
    splits: Tuple[str, ...]
    shards: Tuple[FileRecord, ...]
    items: FileRecord
    format_version: int = FORMAT_VERSION
    reference_image_size: int = 0  # shorter side the references were stored at (0: not recorded)
    extras: Tuple[FileRecord, ...] = ()  # per-item float32 arrays, `NAME.npy` (indexer/ranking/confidence.py)
    tta: str = "none"  # test-time augmentation the references were embedded with; queries use the same
    local_features: Optional[FileRecord] = None  # local_features.STORE, for spatial verification
    local_feature_segments: Tuple["Segment", ...] = ()  # its records in order, one entry per input shard

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        """The manifest in `text`; ValueError (or TypeError, KeyError) saying what is wrong with
        it: every field is checked for its type and range, since a tampered value would otherwise
        fail deep inside a query."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        if raw.get("format_version") != FORMAT_VERSION:
            raise IndexIntegrityError(
                f"manifest format {raw.get('format_version')!r}, this code reads {FORMAT_VERSION}"
            )
        raw["shards"] = tuple(_file_record(s) for s in _typed(raw, "shards", list))
        raw["items"] = _file_record(raw["items"])
        raw["extras"] = tuple(_file_record(e) for e in _typed(raw, "extras", list, []))
        if raw.get("local_features") is not None:
            raw["local_features"] = _file_record(raw["local_features"])
        raw["local_feature_segments"] = tuple(_segment(x) for x in _typed(raw, "local_feature_segments", list, []))
        if raw["local_feature_segments"] and (raw.get("local_features") is None or sum(
                x.n_items for x in raw["local_feature_segments"]) != raw["local_features"].n_items):
            raise ValueError("local_feature_segments do not add up to the local-feature store's items")
        raw["splits"] = tuple(_typed(raw, "splits", list))
        for name in ("dimension", "n_items", "n_trees"):
            if _typed(raw, name, int) < 1:
                raise ValueError(f"{name} {raw[name]} is below 1")
        if _typed(raw, "reference_image_size", int, 0) < 0:
            raise ValueError(f"reference_image_size {raw['reference_image_size']} is negative")
        for name in ("metric", "model_fingerprint", "data_dir"):
            _typed(raw, name, str)
        if not raw["shards"] or not all(isinstance(x, str) for x in raw["splits"]):
            raise ValueError("needs at least one shard, and splits as strings")
        if _typed(raw, "tta", str, "none") not in TTA_MODES:
            raise ValueError(f"tta {raw['tta']!r}: expected one of {TTA_MODES}")
        return cls(**raw)


@dataclasses.dataclass(frozen=True)
class Segment:
    """A run of consecutive records of the local-feature store and the sha256 of their bytes."""

    n_items: int
    sha256: str


def _segment(raw) -> Segment:
    if not isinstance(raw, dict):
        raise ValueError(f"segment entry {raw!r} is not an object")
    segment = Segment(**raw)
    if not isinstance(segment.n_items, int) or isinstance(segment.n_items, bool) or segment.n_items < 0:
        raise ValueError(f"segment n_items {segment.n_items!r} is not a count")
    if not isinstance(segment.sha256, str):
        raise ValueError(f"segment sha256 {segment.sha256!r} is not text")
    return segment


def _typed(raw: Dict, name: str, kind: type, default=None):
    """`raw[name]` (or `default` when absent and a default is given), checked to be a `kind`."""
    value = raw.get(name, default) if default is not None else raw[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name} {value!r} is not a {kind.__name__}")
    return value


def _file_record(raw) -> FileRecord:
    """A manifest's file entry: a plain name inside the index folder, counts and a hex digest."""
    if not isinstance(raw, dict):
        raise ValueError(f"file entry {raw!r} is not an object")
    record = FileRecord(**raw)
    if (not isinstance(record.name, str) or not record.name or os.path.basename(record.name) != record.name
            or record.name in (".", "..")):
        raise ValueError(f"file name {record.name!r} is not a plain name inside the index folder")
    for name in ("n_items", "size"):
        value = getattr(record, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{record.name}: {name} {value!r} is not a count")
    if not isinstance(record.sha256, str):
        raise ValueError(f"{record.name}: sha256 {record.sha256!r} is not text")
    return record


@dataclasses.dataclass
class Index:
    """An opened, verified index folder."""

    directory: str
    manifest: Manifest
    searcher: ShardedIndex
    image_ids: List[str]
    landmark_ids: np.ndarray  # int64 [n_items]
    extras: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # name (no .npy) -> [n_items]
    # the memory-mapped store, checked per segment on first read (local_features.FeatureStore; a
    # plain memory map for an index built before the manifest had segments)
    local_features: Optional[Union[local_features.FeatureStore, np.ndarray]] = None

    @property
    def model_dir(self) -> str:
        return os.path.join(self.directory, MODEL_DIR)


def _write_items(path: str, embedded: Embedded) -> FileRecord:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item", "image_id", "landmark_id"])
        writer.writerows(zip(range(len(embedded.image_ids)), embedded.image_ids, embedded.landmark_ids.tolist()))
    return FileRecord(ITEMS, len(embedded.image_ids), os.path.getsize(path), sha256_file(path))


def _check_file(path: str, record: FileRecord, verify_checksum: bool = True) -> None:
    """IndexIntegrityError unless `path` exists with the manifest's size (and sha256)."""
    if not os.path.isfile(path) or os.path.getsize(path) != record.size or (
            verify_checksum and sha256_file(path) != record.sha256):
        raise IndexIntegrityError(f"{path}: missing or does not match the manifest (size/sha256)")


def _write_extra(directory: str, name: str, values: np.ndarray, n_items: int) -> FileRecord:
    values = np.asarray(values, np.float32)
    if values.shape != (n_items,) or not np.isfinite(values).all():
        raise ValueError(f"extra {name!r}: expected {n_items} finite values, got shape {values.shape}")
    path = os.path.join(directory, f"{name}.npy")
    np.save(path, values, allow_pickle=False)
    return FileRecord(os.path.basename(path), n_items, os.path.getsize(path), sha256_file(path))


def _read_extra(index_dir: str, record: FileRecord) -> np.ndarray:
    """A per-item array, refused unless it is float32 [n_items] and finite (a NaN penalty would
    blank every answer it touches)."""
    path = os.path.join(index_dir, record.name)
    _check_file(path, record)
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise IndexIntegrityError(f"{path}: not a plain .npy array ({e})") from None
    if not isinstance(values, np.ndarray) or values.dtype != np.float32:
        raise IndexIntegrityError(f"{path}: dtype {getattr(values, 'dtype', type(values).__name__)}, expected float32")
    if values.shape != (record.n_items,):
        raise IndexIntegrityError(f"{path}: shape {values.shape}, the manifest says {record.n_items} items")
    if not np.isfinite(values).all():
        raise IndexIntegrityError(f"{path}: {int((~np.isfinite(values)).sum())} value(s) are NaN or infinite")
    return values


def _write_local_features(directory: str, n_items: int, max_features: int,
                          images: Optional[Iterable[bytes]] = None, segment_sizes: Optional[Sequence[int]] = None,
                          parts: Optional[Sequence[local_features.Part]] = None
                          ) -> Tuple[FileRecord, Tuple[Segment, ...]]:
    """The store, from `images` (extracted here; one segment per entry of `segment_sizes`, read
    once the images are consumed, so the iterator may fill it as it goes; one segment when empty
    or None) or from the Beam job's per-shard `parts` (merged, one segment per part)."""
    path = os.path.join(directory, local_features.STORE)
    if parts is not None:
        sizes = [p.n_items for p in parts]
        if sum(sizes) != n_items:
            raise ValueError(f"local-feature parts hold {sum(sizes)} records for {n_items} items")
        digests = local_features.merge_parts(path, parts, max_features)  # checked and hashed as merged
        whole = sha256_file(path)
    else:
        local_features.write_store(path, images, n_items, max_features)
        sizes = list(segment_sizes) if segment_sizes else [n_items]  # filled as `images` were read
        whole, digests = local_features.store_digests(path, sizes)  # one read for both
    record = FileRecord(local_features.STORE, n_items, os.path.getsize(path), whole)
    return record, tuple(Segment(int(n), d) for n, d in zip(sizes, digests))


def _read_local_features(index_dir: str, record: FileRecord, segments: Sequence[Segment], verify_checksum: bool,
                         verify_features: bool) -> Union[local_features.FeatureStore, np.ndarray]:
    """The store. With segments in the manifest: its size and header now, each segment's sha256 on
    first read (all of them now with `verify_features`); without (an older index): the whole
    file's sha256 now, as `verify_checksum` says."""
    path = os.path.join(index_dir, record.name)
    _check_file(path, record, verify_checksum and not segments)
    try:
        store = local_features.open_store(path)
    except ValueError as e:
        raise IndexIntegrityError(cli_errors.one_line(e)) from None
    if store.shape != (record.n_items,):
        raise IndexIntegrityError(f"{path}: {store.shape[0]} records, the manifest says {record.n_items} items")
    if not segments:
        return store
    checked = local_features.FeatureStore(path, store, [s.n_items for s in segments], [s.sha256 for s in segments],
                                          on_corrupt=IndexIntegrityError)
    if verify_features:
        checked.verify()
    return checked


def _copy_model(export_dir: str, dest: str) -> str:
    """Copy the export's SavedModel and export.json to `dest`; return the verified fingerprint."""
    os.makedirs(dest)
    shutil.copytree(os.path.join(export_dir, contract.SAVED_MODEL_DIR), os.path.join(dest, contract.SAVED_MODEL_DIR))
    shutil.copy2(os.path.join(export_dir, contract.EXPORT_INFO), dest)
    fingerprint = model_fingerprint(dest)
    if fingerprint != model_fingerprint(export_dir):
        raise IOError(f"copy of the model in {dest} differs from {export_dir}")
    return fingerprint


def _commit(staging: str, output_dir: str, manifest: Manifest) -> None:
    """Move the staged files into `output_dir`, manifest last, with no moment at which a manifest
    describes files that are not (yet) there."""
    final_manifest = os.path.join(output_dir, MANIFEST)
    if os.path.exists(final_manifest):
        os.remove(final_manifest)
    for old in glob.glob(os.path.join(output_dir, "index-*-of-*.ann")) + glob.glob(os.path.join(output_dir, "*.npy")):
        os.remove(old)
    for name in os.listdir(staging):
        dest = os.path.join(output_dir, name)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.replace(os.path.join(staging, name), dest)
    tmp = final_manifest + ".tmp"
    with open(tmp, "w") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final_manifest)


def write_index(
    output_dir: str,
    embedded: Embedded,
    export_dir: str,
    n_trees: int,
    num_shards: int,
    data_dir: str,
    splits: Sequence[str],
    seed: int = 0,
    reference_image_size: int = 0,
    extras: Optional[Dict[str, np.ndarray]] = None,
    tta: str = "none",
    feature_images: Optional[Iterable[bytes]] = None,
    max_local_features: int = 0,
    deterministic: bool = False,
    feature_segment_sizes: Optional[Sequence[int]] = None,
    feature_parts: Optional[Sequence[local_features.Part]] = None,
) -> Manifest:
    """Build the Annoy shards over `embedded` and commit a complete index folder to `output_dir`.
    `extras`: per-item arrays stored beside it (name -> float32 [n_items]); `tta`: how the
    references were embedded (prediction embeds queries the same way); `feature_images`: the
    encoded image of every item, in item order, whose local features (at most `max_local_features`
    each) are stored for spatial verification, one checked segment per `feature_segment_sizes`
    entry (items per reference shard, read once `feature_images` is consumed); or `feature_parts`: those features already extracted per
    shard by the Beam embedding job (local_features.Part), merged; `deterministic`: one thread per
    Annoy shard (the same file bytes on every run)."""
    os.makedirs(output_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(output_dir, ".staging-*")):  # left by a killed build
        shutil.rmtree(stale)
    staging = os.path.join(output_dir, f".staging-{os.getpid()}")
    os.makedirs(staging)
    try:
        fingerprint = _copy_model(export_dir, os.path.join(staging, MODEL_DIR))
        features, segments = (None, ()) if feature_images is None and feature_parts is None else _write_local_features(
            staging, len(embedded.image_ids), max_local_features, feature_images, feature_segment_sizes,
            feature_parts)
        shards = build_sharded(embedded.vectors, staging, n_trees, num_shards, seed, deterministic)
        manifest = Manifest(
            dimension=int(embedded.vectors.shape[1]),
            metric=METRIC,
            n_items=len(embedded.image_ids),
            n_trees=n_trees,
            model_fingerprint=fingerprint,
            data_dir=data_dir if "://" in data_dir else os.path.abspath(data_dir),
            splits=tuple(splits),
            shards=tuple(shards),
            items=_write_items(os.path.join(staging, ITEMS), embedded),
            reference_image_size=reference_image_size,
            extras=tuple(_write_extra(staging, name, values, len(embedded.image_ids))
                         for name, values in sorted((extras or {}).items())),
            tta=tta,
            local_features=features,
            local_feature_segments=segments,
        )
        _commit(staging, output_dir, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def read_manifest(index_dir: str) -> Manifest:
    """The folder's manifest, or `IndexIntegrityError` when there is none (no index, or a build
    that did not finish)."""
    path = os.path.join(index_dir, MANIFEST)
    if not os.path.isfile(path):
        raise IndexIntegrityError(f"{index_dir}: no {MANIFEST}: not an index folder, or its build did not finish")
    with open(path) as f:
        try:
            return Manifest.from_json(f.read())
        except (ValueError, TypeError, KeyError) as e:
            raise IndexIntegrityError(f"{path}: unreadable manifest: {e}") from None


def _read_items(path: str, record: FileRecord) -> Tuple[List[str], np.ndarray]:
    _check_file(path, record)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]
        if len(rows) != record.n_items or any(len(r) != 3 or int(r[0]) != i for i, r in enumerate(rows)):
            raise ValueError(f"expected items 0..{record.n_items - 1} in order, 3 columns each")
        return [r[1] for r in rows], np.array([int(r[2]) for r in rows], dtype=np.int64)
    except (ValueError, OverflowError, csv.Error) as e:  # UnicodeDecodeError is a ValueError
        raise IndexIntegrityError(f"{path}: {e}") from None


def open_index(index_dir: str, dimension: Optional[int] = None, verify_checksum: bool = True,
               verify_features: bool = False) -> Index:
    """Open and verify an index folder. `dimension`, when given, is what the caller's model
    produces; a different index dimension is refused here rather than crashing Annoy later. The
    local-feature store's segments are checked on first read, or all now with `verify_features`."""
    manifest = read_manifest(index_dir)
    if manifest.metric != METRIC:
        raise IndexIntegrityError(f"{index_dir}: metric {manifest.metric!r}, this indexer queries {METRIC!r}")
    if dimension is not None and dimension != manifest.dimension:
        raise IndexIntegrityError(
            f"{index_dir}: index dimension {manifest.dimension}, the model produces {dimension}"
        )
    if sum(s.n_items for s in manifest.shards) != manifest.n_items:
        raise IndexIntegrityError(f"{index_dir}: shard item counts do not add up to {manifest.n_items}")
    model_dir = os.path.join(index_dir, MODEL_DIR)
    try:
        fingerprint = model_fingerprint(model_dir)
    except OSError:
        fingerprint = None
    if fingerprint != manifest.model_fingerprint:
        raise IndexIntegrityError(f"{model_dir}: missing, or not the model the index was built with (fingerprint)")
    image_ids, landmark_ids = _read_items(os.path.join(index_dir, ITEMS), manifest.items)
    extras = {os.path.splitext(e.name)[0]: _read_extra(index_dir, e) for e in manifest.extras}
    store = None if manifest.local_features is None else _read_local_features(
        index_dir, manifest.local_features, manifest.local_feature_segments, verify_checksum, verify_features)
    searcher = ShardedIndex(index_dir, manifest.shards, manifest.dimension, manifest.n_trees, verify_checksum)
    return Index(index_dir, manifest, searcher, image_ids, landmark_ids, extras, store)
