"""The recognition-quality options end to end on the tiny export: flip TTA, database-side
augmentation and non-landmark penalties at build, alpha-query expansion and the margin at predict."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from indexer import predict
from indexer.ranking import confidence, neighbours, nonlandmark, rerank
from indexer.store import index_dir
from indexer.store.annoy_index import IndexIntegrityError, sha256_file
from indexer.build import build
from indexer.embedding.embed import Embedder, embed_records, list_shards
from indexer.outputs import read_submission, write_json
from pipelines.cli.cli_errors import InputError
from tests.unit.indexer.test_build_predict import (  # noqa: F401 - test_csv is a fixture used here
    build_config, fake_preprocessed, predict_config, test_csv)


def fake_nonlandmark_records(index_out, reference_shards, csv_path, image_size) -> None:
    """IDX/nonlandmark_records as pipelines.preprocess would leave it (the val shards as test-*)."""
    records = index_out / nonlandmark.RECORDS_DIR
    records.mkdir(parents=True)
    for src in sorted(reference_shards.glob("val-*.tfrecord")):
        shutil.copy(src, records / src.name.replace("val-", "test-"))
    write_json(str(records / nonlandmark.DONE_MARKER),
               {"csv": str(csv_path.resolve()), "sha256": sha256_file(str(csv_path)), "image_size": image_size})


@pytest.fixture(scope="module")
def quality_index(tiny_export, reference_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "idx"
    csv_path = out.parent / "nonlandmark.csv"
    csv_path.write_text("id,url\nx,x.jpg\n")
    fake_nonlandmark_records(out, reference_shards, csv_path, 32)
    build(build_config(tiny_export, reference_shards, out, tta="flip", dba_k=3, dba_alpha=3.0,
                       nonlandmark_csv=str(csv_path), nonlandmark_k=5, image_size=32))
    return out


def test_build_stores_flip_dba_vectors_and_penalties(quality_index, tiny_export, reference_shards):
    index = index_dir.open_index(str(quality_index))
    assert index.manifest.tta == "flip" and [e.name for e in index.manifest.extras] == ["penalties.npy"]
    embedder = Embedder(str(tiny_export))
    refs = embed_records(list_shards(str(reference_shards), ["train"]), embedder, 16, "flip").vectors
    refs = rerank.database_augmentation(refs, 3, 3.0)
    stored = index.searcher.item_vectors(np.arange(index.manifest.n_items))
    np.testing.assert_allclose(stored, refs, atol=1e-5)
    others = embed_records(list_shards(str(reference_shards), ["val"]), embedder, 16, "flip").vectors
    np.testing.assert_allclose(index.extras["penalties"], confidence.reference_penalties(refs, others, 5), atol=1e-5)
    assert index.searcher.item_vectors(np.array([[-1]])).tolist() == [[[0.0] * refs.shape[1]]]


def test_a_tampered_penalty_file_is_refused(quality_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(quality_index, copy)
    np.save(copy / "penalties.npy", np.zeros(36, np.float32))
    with pytest.raises(IndexIntegrityError, match="penalties.npy"):
        index_dir.open_index(str(copy))


def test_predict_with_aqe_margin_and_penalty(quality_index, reference_shards, tmp_path, test_csv):
    csv_path, _ = test_csv
    confidences = {}
    for name, options in {"plain": dict(penalty_weight=0.0),
                          "penalised": dict(penalty_weight=1.0),
                          "aqe_margin": dict(rerank="aqe", aqe_k=2, confidence="margin")}.items():
        pred = tmp_path / name
        config = predict_config(quality_index, csv_path, pred, **options)
        fake_preprocessed(pred, reference_shards, config)
        assert predict.predict(config)["predicted"] == 12
        confidences[name] = {k: c for k, (_, c) in read_submission(str(pred / "submission.csv")).items()}
    # the penalty only ever lowers a confidence, and here it lowers every one (all penalties > 0)
    assert all(confidences["penalised"][k] < confidences["plain"][k] for k in confidences["plain"])
    assert all(0.0 <= c <= 1.0 for c in confidences["aqe_margin"].values())


def test_build_takes_dba_and_the_other_landmark_penalty_from_annoy_above_the_threshold(
        tiny_export, reference_shards, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    trees, annoy_chunks = [], neighbours._annoy_chunks
    monkeypatch.setattr(neighbours, "_annoy_chunks", lambda *a: trees.append(a[3].n_trees) or annoy_chunks(*a))
    build(build_config(tiny_export, reference_shards, out, dba_k=3, dba_alpha=3.0, other_landmark_penalty=True,
                       neighbours_exact_below=0, neighbour_trees=4))  # 0: the Annoy path even for 36 references
    assert trees == [4, 4]  # one temporary Annoy index for DBA, one for the penalty (on the DBA vectors)
    index = index_dir.open_index(str(out))
    embedded = embed_records(list_shards(str(reference_shards), ["train"]), Embedder(str(tiny_export)), 16)
    exact = neighbours.NeighbourSettings(exact_below=10**9)
    refs = rerank.database_augmentation(embedded.vectors, 3, 3.0, search=exact)
    np.testing.assert_allclose(index.searcher.item_vectors(np.arange(index.manifest.n_items)), refs, atol=1e-5)
    np.testing.assert_allclose(index.extras["penalties"],
                               confidence.other_landmark_penalties(refs, embedded.landmark_ids, 5, search=exact),
                               atol=1e-5)
    assert not list(out.glob(".staging-*"))  # the temporary neighbour indexes are gone
    config = json.loads((out / "config.json").read_text())
    assert (config["neighbours_exact_below"], config["neighbour_trees"]) == (0, 4)
    with pytest.raises(InputError, match="--neighbour_trees"):
        build(build_config(tiny_export, reference_shards, tmp_path / "bad", neighbour_trees=0))
