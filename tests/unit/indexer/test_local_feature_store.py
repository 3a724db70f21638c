"""Local features from the Beam embedding job (indexer/embedding/beam_embed.py) merged into the index's
store (indexer/ranking/local_features.py, indexer/store/index_dir.py): the same bytes as the in-process
build, resume per shard, and a store checked per segment on first read instead of hashed at every open."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from indexer.build import build
from indexer.embedding import beam_embed, embedding_shards
from indexer.embedding.embed import iter_jpegs, list_shards, model_fingerprint
from indexer.embedding.embed_job import EmbedSettings
from indexer.ranking import local_features
from indexer.store import index_dir, verify_index
from indexer.store.annoy_index import IndexIntegrityError
from tests.unit.indexer.test_build_predict import build_config

F = 200


@pytest.fixture(scope="module")
def files(reference_shards):
    return list_shards(str(reference_shards), ["train"])


@pytest.fixture(scope="module")
def in_process(tiny_export, reference_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "idx"
    build(build_config(tiny_export, reference_shards, out, local_features=F, deterministic=True,
                       embedding=EmbedSettings("local")))
    return out


@pytest.fixture(scope="module")
def on_beam(tiny_export, reference_shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("beam")
    build(build_config(tiny_export, reference_shards, root / "idx", local_features=F, deterministic=True,
                       embedding=EmbedSettings("beam", str(root / "emb"), ("--runner=DirectRunner",))))
    return root


def manifest(index):
    return json.loads((index / index_dir.MANIFEST).read_text())


def test_the_beam_job_gives_the_in_process_store_byte_for_byte(in_process, on_beam, files):
    beam_index = on_beam / "idx"
    assert (beam_index / local_features.STORE).read_bytes() == (in_process / local_features.STORE).read_bytes()
    assert manifest(beam_index)["local_features"] == manifest(in_process)["local_features"]
    segments = manifest(beam_index)["local_feature_segments"]
    assert segments == manifest(in_process)["local_feature_segments"]
    counts = [sum(1 for _ in iter_jpegs([f])) for f in files]
    assert [s["n_items"] for s in segments] == counts and len(counts) == 2 and min(counts) > 0
    # the features are the image's own, extracted from the bytes that were embedded
    store = index_dir.open_index(str(beam_index)).local_features
    extract = local_features.Extractor(F)
    for item, (_, jpeg) in enumerate(iter_jpegs(files)):
        got = local_features.unpack(store[item])
        want = extract(jpeg)
        np.testing.assert_array_equal(got.descriptors, want.descriptors)
        np.testing.assert_array_equal(got.xy, want.xy)
    assert sum(int(store[i]["count"]) for i in range(len(store))) > 0
    # one part per shard beside its embeddings, none left half-written
    names = sorted(os.listdir(on_beam / "emb"))
    assert names == sorted([os.path.basename(f) + s for f in files for s in (".npz", local_features.PART_SUFFIX)])


def test_a_rerun_redoes_only_shards_without_their_features(files, tiny_export, tmp_path):
    emb = str(tmp_path / "emb")
    fingerprint = model_fingerprint(str(tiny_export))
    beam_embed.embed_with_beam(files, str(tiny_export), emb, 16, [], max_features=F)
    first = beam_embed.feature_parts(emb, files, fingerprint, F)
    npz = [embedding_shards.output_path(emb, f) for f in files]
    before = [os.stat(p).st_ino for p in npz]
    os.remove(first[0].path)  # the worker died after the part... or it was lost: redo shard 0
    open(first[1].path + local_features.TMP_MARK + "dead", "wb").write(b"half")  # a killed worker's
    with pytest.raises(Exception, match="local features"):
        beam_embed.feature_parts(emb, files, fingerprint, F + 1)  # another F: not these parts

    beam_embed.embed_with_beam(files, str(tiny_export), emb, 16, [], max_features=F)
    after = [os.stat(p).st_ino for p in npz]
    assert after[0] != before[0] and after[1] == before[1], "only the shard without its part is redone"
    assert beam_embed.feature_parts(emb, files, fingerprint, F) == first
    assert not [n for n in os.listdir(emb) if local_features.TMP_MARK in n]

    beam_embed.embed_with_beam(files, str(tiny_export), emb, 16, [])  # no features asked: embeddings redone
    with pytest.raises(Exception, match="local features"):
        beam_embed.feature_parts(emb, files, fingerprint, F)


def test_a_damaged_part_stops_the_merge_with_one_line(files, tiny_export, tmp_path):
    emb = str(tmp_path / "emb")
    beam_embed.embed_with_beam(files, str(tiny_export), emb, 16, [], max_features=F)
    parts = beam_embed.feature_parts(emb, files, model_fingerprint(str(tiny_export)), F)
    data = bytearray(open(parts[1].path, "rb").read())
    data[-7] ^= 0x10
    open(parts[1].path, "wb").write(bytes(data))
    with pytest.raises(local_features.PartError, match=os.path.basename(parts[1].path)) as err:
        local_features.merge_parts(str(tmp_path / "store.npy"), parts, F)
    assert "\n" not in str(err.value)
    with open(parts[1].path, "r+b") as f:
        f.truncate(len(data) - 100)
    with pytest.raises(local_features.PartError, match="truncated"):
        local_features.merge_parts(str(tmp_path / "store.npy"), parts, F)


def test_open_hashes_none_of_the_store_and_the_first_read_checks_one_segment(in_process, monkeypatch):
    whole, segment_bytes = [], []
    real_file, real_segment = index_dir.sha256_file, local_features.segment_sha256
    monkeypatch.setattr(index_dir, "sha256_file", lambda path, *a: whole.append(path) or real_file(path, *a))
    monkeypatch.setattr(local_features, "segment_sha256",
                        lambda records, *a: segment_bytes.append(records.nbytes) or real_segment(records, *a))
    index = index_dir.open_index(str(in_process))
    assert whole and not [p for p in whole if p.endswith(local_features.STORE)]
    assert segment_bytes == []
    first = manifest(in_process)["local_feature_segments"][0]["n_items"]
    itemsize = local_features.store_dtype(F).itemsize
    index.local_features[0], index.local_features[first - 1]
    assert segment_bytes == [first * itemsize], "one segment hashed, once"
    index.local_features[first]
    assert len(segment_bytes) == 2 and index.local_features.checked_segments == 2
    segment_bytes.clear()
    index_dir.open_index(str(in_process), verify_features=True)
    assert sum(segment_bytes) == len(index.local_features) * itemsize


def test_a_flipped_byte_in_one_segment_fails_that_segment_only(in_process, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(in_process, copy)
    store_path = copy / local_features.STORE
    first = manifest(in_process)["local_feature_segments"][0]["n_items"]
    data = bytearray(store_path.read_bytes())
    data[-5] ^= 0x01  # the last record's descriptors: in the second segment
    store_path.write_bytes(bytes(data))
    index = index_dir.open_index(str(copy))  # same size: opens
    local_features.unpack(index.local_features[first - 1])  # the first segment is intact
    with pytest.raises(IndexIntegrityError, match=r"local_features.npy.*segment 1") as err:
        index.local_features[first]
    assert "\n" not in str(err.value)
    with pytest.raises(IndexIntegrityError, match="segment 1"):
        index_dir.open_index(str(copy), verify_features=True)
    # the check on request: `make verify-index`
    assert "every file matches the manifest (local features:" in verify_index.verify(str(in_process))
    done = subprocess.run([sys.executable, "-m", "indexer.store.verify_index", f"--index_dir={copy}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "segment 1" in done.stderr and "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if "segment 1" in line]) == 1


def test_a_truncated_store_is_refused_at_open(in_process, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(in_process, copy)
    with open(copy / local_features.STORE, "r+b") as f:
        f.truncate(os.path.getsize(copy / local_features.STORE) - 1)
    with pytest.raises(IndexIntegrityError, match=local_features.STORE):
        index_dir.open_index(str(copy))
    raw = manifest(in_process)
    raw["local_feature_segments"][0]["n_items"] += 1  # segments that do not add up: an unreadable manifest
    (copy / index_dir.MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(IndexIntegrityError, match="local_feature_segments"):
        index_dir.open_index(str(copy))


def test_store_digests_gives_the_file_and_each_segment_sha256_from_one_read(tmp_path):
    from indexer.store.annoy_index import sha256_file

    path = str(tmp_path / "store.npy")
    store = np.lib.format.open_memmap(path, mode="w+", dtype=local_features.store_dtype(8), shape=(7,))
    store["count"] = np.arange(7)
    store.flush()
    del store
    whole, segments = local_features.store_digests(path, [3, 4], chunk_bytes=100)  # blocks across records
    records = local_features.open_store(path)
    assert whole == sha256_file(path)
    assert segments == [local_features.segment_sha256(records[0:3]), local_features.segment_sha256(records[3:7])]
    with pytest.raises(ValueError):
        local_features.store_digests(path, [3, 3])
