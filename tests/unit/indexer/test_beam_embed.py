"""Embedding as a Beam job (indexer/embedding/beam_embed.py, embedding_shards.py, embed_job.py): the same
embeddings as the single-process path on the DirectRunner and on a real local Dask cluster,
resume per shard, and how the runner is chosen."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from indexer.embedding import beam_embed, embedding_shards
from indexer.embedding.beam_embed import embed_with_beam, pipeline_options, shared_embedder
from indexer.embedding.embed import Embedded, Embedder, embed_records, iter_jpegs, list_shards, model_fingerprint
from indexer.embedding.embed_job import AUTO_BEAM_MIN_RECORDS, EmbedSettings, choose, embed_shards
from indexer.ranking import local_features
from pipelines.cli import console
from tests.unit.indexer.indexer_helpers import EMBEDDING_DIM, make_export

DASK_RUNNER = "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"


@pytest.fixture(scope="module")
def files(reference_shards):
    return list_shards(str(reference_shards), ["train", "val"])


@pytest.fixture(scope="module")
def in_process(files, tiny_export) -> Embedded:
    return embed_records(files, Embedder(str(tiny_export)), batch_size=16)


def assert_same(a: Embedded, b: Embedded) -> None:
    assert a.image_ids == b.image_ids
    assert a.landmark_ids.tolist() == b.landmark_ids.tolist()
    assert b.vectors.dtype == np.float32
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)


def writers(embed_dir, files):
    return [embedding_shards.read(embedding_shards.output_path(str(embed_dir), f))[0]["written_by"] for f in files]


def test_direct_runner_gives_the_single_process_embeddings_one_file_per_shard(files, tiny_export, in_process,
                                                                               tmp_path):
    emb = tmp_path / "emb"
    bar = console.Progress("references embedded", len(in_process.image_ids), "img", every_s=3600, live=False)
    got = embed_with_beam(files, str(tiny_export), str(emb), 5, ["--runner=DirectRunner"], progress=bar)
    assert_same(in_process, got)
    assert (bar.n, bar.initial) == (len(got.image_ids), 0) and bar.line().endswith(f"{len(files)}/{len(files)} shards]")
    assert sorted(os.listdir(emb)) == sorted(os.path.basename(f) + ".npz" for f in files)  # no temporaries
    meta, part = embedding_shards.read(embedding_shards.output_path(str(emb), files[0]))
    assert meta["model_fingerprint"] == model_fingerprint(str(tiny_export))
    assert meta["shard"] == os.path.basename(files[0]) and meta["shard_size"] == os.path.getsize(files[0])
    assert part.image_ids == in_process.image_ids[:len(part.image_ids)] and len(part.image_ids) == 18


def test_rerun_redoes_only_missing_stale_or_changed_shards(files, tiny_export, in_process, tmp_path):
    emb = tmp_path / "emb"
    embed_with_beam(files, str(tiny_export), str(emb), 16, [])
    paths = [embedding_shards.output_path(str(emb), f) for f in files]
    before = [os.stat(p) for p in paths]
    os.remove(paths[0])  # never finished
    meta, part = embedding_shards.read(paths[1])
    embedding_shards.write(paths[1], part, dict(meta, model_fingerprint="0" * 64))  # another model's
    embedding_shards.write(paths[2], part, dict(meta, shard_sha256="0" * 64))  # the shard changed since
    (emb / (os.path.basename(paths[3]) + ".tmp-dead")).write_bytes(b"half")  # a killed worker's
    changed = [os.stat(p) for p in paths[1:3]]

    assert_same(in_process, embed_with_beam(files, str(tiny_export), str(emb), 16, []))
    after = [os.stat(p) for p in paths]
    assert all(a.st_ino != c.st_ino for a, c in zip(after[1:3], changed)), "stale files are redone"
    assert (after[3].st_ino, after[3].st_mtime_ns) == (before[3].st_ino, before[3].st_mtime_ns), "done: kept"
    assert sorted(os.listdir(emb)) == sorted(os.path.basename(p) for p in paths)

    beam_embed._MODELS.clear()
    bar = console.Progress("references embedded", len(in_process.image_ids), "img", every_s=3600, live=False)
    assert_same(in_process, embed_with_beam(files, str(tiny_export), str(emb), 16, [], progress=bar))
    assert not beam_embed._MODELS, "a fully resumed job loads no model"
    assert bar.n == bar.initial == len(in_process.image_ids), "all resumed: counted, out of the rate"


def test_gather_refuses_missing_or_foreign_files(files, tiny_export, tmp_path):
    emb = tmp_path / "emb"
    fingerprint = model_fingerprint(str(tiny_export))
    with pytest.raises(RuntimeError, match="missing"):
        embedding_shards.gather(str(emb), files[:1], fingerprint, EMBEDDING_DIM)
    embed_with_beam(files[:1], str(tiny_export), str(emb), 16, [])
    with pytest.raises(RuntimeError, match="model_fingerprint"):
        embedding_shards.gather(str(emb), files[:1], "f" * 64, EMBEDDING_DIM)
    (emb / "garbage.npz").write_bytes(b"not a zip")
    assert embedding_shards.read_meta(str(emb / "garbage.npz")) is None  # redone, not a crash


def test_a_worker_refuses_a_model_that_is_not_the_drivers(tiny_export, tmp_path):
    other = make_export(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="not the driver's model"):
        shared_embedder(str(other), model_fingerprint(str(tiny_export)))
    fingerprint = model_fingerprint(str(tiny_export))
    assert shared_embedder(str(tiny_export), fingerprint) is shared_embedder(str(tiny_export), fingerprint)


def test_dask_gets_one_shard_per_partition_unless_told():
    from apache_beam.runners.dask.dask_runner import DaskOptions

    def partitioning(args):
        options = pipeline_options(args).view_as(DaskOptions)
        return options.partition_size, options.npartitions

    assert partitioning([DASK_RUNNER]) == (1, None)  # the runner's default: 128 elements, all on one worker
    assert partitioning(["--runner=dask"]) == (1, None)
    assert pipeline_options(["--runner=dask"], "tcp://127.0.0.1:1").view_as(DaskOptions).address == "tcp://127.0.0.1:1"
    assert partitioning([DASK_RUNNER, "--dask_npartitions=3"]) == (None, 3)
    assert partitioning(["--runner=DirectRunner"]) == (None, None)


def test_runner_choice(tmp_path):
    shard_files = [str(tmp_path / "train-00000-of-00002.tfrecord"), str(tmp_path / "train-00001-of-00002.tfrecord")]
    assert choose(EmbedSettings("auto"), shard_files) == "local"  # no stats.json: cannot count, small path
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"written_by_split": {"train": AUTO_BEAM_MIN_RECORDS - 1, "val": 10}}))
    assert choose(EmbedSettings("auto"), shard_files) == "local"
    stats.write_text(json.dumps({"written_by_split": {"train": AUTO_BEAM_MIN_RECORDS, "val": 10}}))
    assert choose(EmbedSettings("auto"), shard_files) == "beam"
    assert choose(EmbedSettings("local"), shard_files) == "local"
    assert choose(EmbedSettings("auto", beam_args=("--direct_num_workers=2",)), []) == "beam"
    with pytest.raises(ValueError, match="Beam options need --embed_runner=beam"):
        choose(EmbedSettings("local", beam_args=("--runner=DirectRunner",)), shard_files)
    with pytest.raises(ValueError, match="unknown flag.*--n_tree"):  # a typo never silently picks Beam
        pipeline_options(["--direct_num_workers=2", "--n_tree=3"])
    with pytest.raises(ValueError, match="need --runner=dask"):
        pipeline_options(["--runner=DirectRunner"], dask_address="tcp://127.0.0.1:1")


def test_embed_shards_local_path_writes_nothing(files, tiny_export, in_process, tmp_path):
    assert_same(in_process, embed_shards(files, str(tiny_export), 16, EmbedSettings("local"), str(tmp_path / "e")))
    assert not (tmp_path / "e").exists()


def test_dask_runner_gives_the_single_process_embeddings_and_local_features(files, tiny_export, in_process,
                                                                            tmp_path):
    from tests.tools.dask_cluster import dask_cluster

    emb = tmp_path / "emb"
    bar = console.Progress("references embedded", len(in_process.image_ids), "img", every_s=3600, live=False)
    with dask_cluster(workers=2) as address:
        got = embed_shards(files, str(tiny_export), 16,
                           EmbedSettings("auto", str(emb), ("--runner=dask",), dask_address=address),
                           str(tmp_path / "unused"), progress=bar, local_features=100)
    assert_same(in_process, got)
    assert bar.n == len(got.image_ids) and bar.line().endswith(f"{len(files)}/{len(files)} shards]")
    pids = {w["pid"] for w in writers(emb, files)}
    assert os.getpid() not in pids, "the shards were embedded by the Dask workers, not here"
    print(f"\nDask: {len(files)} shards embedded by {len(pids)} worker process(es)")
    # their local features, merged, are the in-process store's bytes (indexer/build.py's local path)
    parts = beam_embed.feature_parts(str(emb), files, model_fingerprint(str(tiny_export)), 100)
    assert [p.n_items for p in parts] == [sum(1 for _ in iter_jpegs([f])) for f in files]
    merged, local = tmp_path / "merged.npy", tmp_path / "local.npy"
    assert local_features.merge_parts(str(merged), parts, 100) == [p.sha256 for p in parts]
    local_features.write_store(str(local), (jpeg for _, jpeg in iter_jpegs(files)), len(got.image_ids), 100)
    assert merged.read_bytes() == local.read_bytes()
    assert local_features.store_digests(str(local), [p.n_items for p in parts])[1] == [p.sha256 for p in parts]
