"""Embedding TFRecord shards with an export (indexer/embedding/embed.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from indexer.embedding.embed import Embedder, embed_records, list_shards, model_fingerprint, read_jpegs
from tests.unit.indexer.indexer_helpers import EMBEDDING_DIM, make_export


def test_embeds_every_record_in_file_order_with_unit_vectors(tiny_export, reference_shards):
    files = list_shards(str(reference_shards), ["train", "val"])
    assert [f.rsplit("/", 1)[1] for f in files] == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
        "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
    embedded = embed_records(files, Embedder(str(tiny_export)), batch_size=5)
    assert len(embedded.image_ids) == 6 * 6 + 6 * 2
    assert embedded.vectors.shape == (48, EMBEDDING_DIM) and embedded.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embedded.vectors, axis=1), 1.0, atol=1e-5)
    # make_shards keeps each class whole, as make preprocess does (classes 0, 2, 4 in shard 0), in image
    # order; images are named train-CCC-III.
    assert embedded.image_ids[:8] == [f"train-000-00{i}" for i in range(6)] + ["train-002-000", "train-002-001"]
    assert [int(i.split("-")[1]) for i in embedded.image_ids] == embedded.landmark_ids.tolist()


def test_batch_size_does_not_change_embeddings(tiny_export, reference_shards):
    files = list_shards(str(reference_shards), ["val"])
    embedder = Embedder(str(tiny_export))
    a = embed_records(files, embedder, batch_size=1)
    b = embed_records(files, embedder, batch_size=64)
    assert a.image_ids == b.image_ids
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)


def test_no_records_gives_empty_arrays(tiny_export):
    embedded = embed_records([], Embedder(str(tiny_export)))
    assert embedded.image_ids == [] and embedded.vectors.shape == (0, EMBEDDING_DIM)


def test_missing_shards_and_missing_export(tmp_path):
    assert list_shards(str(tmp_path), ["train"]) == []
    (tmp_path / "train-00000-of-00001.tfrecord.tmp").write_bytes(b"")  # never a temporary file
    assert list_shards(str(tmp_path), ["train"]) == []
    with pytest.raises(FileNotFoundError, match="not a model export"):
        Embedder(str(tmp_path))


def test_fingerprint_tracks_model_bytes(tiny_export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_export, copy)
    assert model_fingerprint(str(copy)) == model_fingerprint(str(tiny_export))
    other = make_export(tmp_path / "other", seed=1)
    assert model_fingerprint(str(other)) != model_fingerprint(str(tiny_export))


def test_read_jpegs_returns_only_wanted_ids(reference_shards):
    files = list_shards(str(reference_shards), ["val"])
    found = read_jpegs(files, ["val-003-001", "nope"])
    assert list(found) == ["val-003-001"] and found["val-003-001"][:2] == b"\xff\xd8"
