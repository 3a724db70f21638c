"""One Annoy file: exact neighbours on hand-placed vectors, and every bad file refused before
Annoy maps it. Loads run in this process on purpose: a segfault would fail the test run."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from indexer.store.annoy_index import IndexIntegrityError, build_annoy, check_annoy, open_annoy


def unit(*xs):
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


# Four hand-placed unit vectors in 3-D: 0 and 1 are 10 degrees apart, 2 is 90 degrees from 0,
# 3 points away from everything.
ANGLES = np.radians([0.0, 10.0, 90.0])
HAND = np.stack([
    unit(np.cos(ANGLES[0]), np.sin(ANGLES[0]), 0),
    unit(np.cos(ANGLES[1]), np.sin(ANGLES[1]), 0),
    unit(np.cos(ANGLES[2]), np.sin(ANGLES[2]), 0),
    unit(-1, -1, -1),
])


@pytest.fixture
def hand_index(tmp_path):
    path = str(tmp_path / "hand.ann")
    return path, build_annoy(HAND, path, n_trees=3)


def test_hand_placed_neighbours_and_distances(hand_index):
    path, record = hand_index
    index = open_annoy(path, record, dimension=3, n_trees=3)
    ids, dist = index.get_nns_by_vector(unit(1, 0.01, 0), 4, include_distances=True)
    assert ids == [0, 1, 2, 3]
    ids, dist = index.get_nns_by_item(0, 2, include_distances=True)
    assert ids == [0, 1]
    # Annoy's angular distance is sqrt(2 - 2 cos).
    np.testing.assert_allclose(dist[1], np.sqrt(2 - 2 * np.cos(np.radians(10))), rtol=1e-5)
    assert index.get_nns_by_vector(unit(-1, -1, -0.9), 1) == [3]
    assert record.n_items == 4 and record.size == os.path.getsize(path) and len(record.sha256) == 64


def test_final_name_holds_only_the_complete_file(hand_index):
    path, _ = hand_index
    assert os.listdir(os.path.dirname(path)) == ["hand.ann"]


def test_truncated_file_is_refused(hand_index):
    path, record = hand_index
    with open(path, "r+b") as f:
        f.truncate(record.size // 2)
    with pytest.raises(IndexIntegrityError, match="truncated"):
        open_annoy(path, record, 3, 3)


def test_truncated_file_with_a_matching_manifest_is_refused(hand_index):
    """Even when the record agrees with the cut file (a manifest rewritten by mistake), the
    layout check finds the tree roots missing."""
    path, record = hand_index
    stride = 12 + 4 * 3
    cut = (record.size // stride // 2) * stride
    with open(path, "r+b") as f:
        f.truncate(cut)
    lying = dataclasses.replace(record, size=cut)
    with pytest.raises(IndexIntegrityError, match="tree roots|n_descendants"):
        open_annoy(path, lying, 3, 3, verify_checksum=False)


def test_same_size_random_bytes_are_refused(hand_index):
    path, record = hand_index
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).bytes(record.size))
    with pytest.raises(IndexIntegrityError, match="n_descendants"):
        open_annoy(path, record, 3, 3, verify_checksum=False)


def test_flipped_vector_byte_passes_the_layout_but_not_the_checksum(hand_index):
    path, record = hand_index
    with open(path, "r+b") as f:
        f.seek(12 + 2)  # inside item 0's vector
        byte = f.read(1)
        f.seek(12 + 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    check_annoy(path, record, 3, 3, verify_checksum=False)
    with pytest.raises(IndexIntegrityError, match="sha256"):
        open_annoy(path, record, 3, 3)


def test_wrong_dimension_is_refused_even_when_sizes_divide(tmp_path):
    """8-D angular nodes are 44 bytes, 19-D are 88: a 19-D reading of an 8-D file of an even node
    count divides evenly, which is the case Annoy's own load() accepts and then segfaults on."""
    rng = np.random.default_rng(0)
    path = str(tmp_path / "d8.ann")
    record = build_annoy(rng.standard_normal((40, 8)), path, n_trees=2)
    assert record.size % (12 + 4 * 19) == 0  # the dangerous case is really exercised
    for wrong_dim in (19, 4, 16):
        with pytest.raises(IndexIntegrityError, match="dimension"):
            open_annoy(path, record, wrong_dim, 2, verify_checksum=False)


def test_wrong_metric_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "euclid.ann")
    record = build_annoy(rng.standard_normal((50, 8)), path, n_trees=2, metric="euclidean")
    with pytest.raises(IndexIntegrityError, match="angular"):
        open_annoy(path, record, 8, 2, metric="angular", verify_checksum=False)
    assert open_annoy(path, record, 8, 2, metric="euclidean").get_n_items() == 50


def test_missing_file_and_wrong_tree_count_are_refused(hand_index):
    path, record = hand_index
    with pytest.raises(IndexIntegrityError, match="tree roots"):
        open_annoy(path, record, 3, n_trees=7)
    os.remove(path)
    with pytest.raises(IndexIntegrityError, match="missing"):
        open_annoy(path, record, 3, 3)


def test_bad_vectors_are_refused_before_building(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        build_annoy(np.array([[1.0, np.nan]]), str(tmp_path / "x.ann"), 1)
    with pytest.raises(ValueError, match="non-empty"):
        build_annoy(np.zeros((0, 4)), str(tmp_path / "x.ann"), 1)
    assert os.listdir(tmp_path) == []


def test_failed_rename_leaves_the_previous_file_intact_and_no_temp(hand_index, monkeypatch):
    import indexer.store.annoy_index as annoy_index

    path, record = hand_index

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(annoy_index.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        build_annoy(HAND[:2], path, 2)
    monkeypatch.undo()
    assert os.listdir(os.path.dirname(path)) == ["hand.ann"]
    check_annoy(path, record, 3, 3)  # still the old, complete file


def test_killed_build_leaves_no_file_under_the_final_name(tmp_path):
    """SIGKILL a build in another process while it runs: nothing appears under the final name."""
    final = tmp_path / "big.ann"
    script = textwrap.dedent(f"""
        import numpy as np
        from indexer.store.annoy_index import build_annoy
        print("start", flush=True)
        build_annoy(np.random.default_rng(0).standard_normal((300000, 64)), {str(final)!r}, n_trees=30, n_jobs=1)
        print("done", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    time.sleep(1.0)
    assert proc.poll() is None, "the build finished before it could be killed: make it bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not final.exists()


# --- issue 25.4: crafted node pointers ------------------------------------------------------------
# 40 unit vectors 9 degrees apart around the xy-plane's circle: more than the K = d + 2 = 5 item ids
# a 3-D angular leaf can list, so every tree has split nodes above its leaves.
CIRCLE = np.stack([unit(np.cos(a), np.sin(a), 0) for a in np.radians(np.arange(40) * 9.0)])
WORDS = 3 + 3  # int32 words per 3-D angular node: n_descendants, children[2] (or norm), v[3]


def crafted(tmp_path, edit):
    """A 3-tree index over CIRCLE whose node words `edit(words, K)` changed, with a record whose
    size and sha256 match the changed file (as a crafter would fix the manifest)."""
    path = str(tmp_path / "circle.ann")
    record = build_annoy(CIRCLE, path, n_trees=3, n_jobs=1)
    words = np.fromfile(path, np.int32).reshape(-1, WORDS)
    edit(words, WORDS - 1)
    words.tofile(path)
    from indexer.store.annoy_index import sha256_file

    return path, dataclasses.replace(record, size=os.path.getsize(path), sha256=sha256_file(path))


def first(words, k, kind):
    """The first non-item node of a kind: 'split' (more descendants than K) or 'leaf'."""
    n = len(CIRCLE)
    counts = words[n:, 0]
    return n + int(np.flatnonzero(counts > k if kind == "split" else (counts >= 2) & (counts <= k))[0])


def test_untouched_circle_index_answers_the_nearest_hand_placed_vectors(tmp_path):
    path, record = crafted(tmp_path, lambda words, k: None)
    index = open_annoy(path, record, 3, 3)
    assert index.get_nns_by_vector(unit(1, 0.05, 0), 3, search_k=1000) == [0, 1, 39]
    assert index.get_nns_by_vector(unit(0, 1, 0), 1, search_k=1000) == [10]


def _split_child_far(words, k):
    words[first(words, k, "split"), 1] = 10 ** 8  # the exit-139 case: a child far past the file's end


def _split_child_self(words, k):
    node = first(words, k, "split")
    words[node, 2] = node  # a cycle: the query would walk it forever


def _leaf_item_far(words, k):
    words[first(words, k, "leaf"), 1] = 10 ** 8  # a leaf listing an item id past the items


def _negative_count(words, k):
    words[first(words, k, "split"), 0] = -7  # read as a leaf of -7 ids


def _nan_plane(words, k):
    words[first(words, k, "split"), 3] = np.float32(np.nan).view(np.int32)


@pytest.mark.parametrize("edit, message", [
    (_split_child_far, r"node \d+: a split node points at node \[100000000, \d+\]"),
    (_split_child_self, r"node (\d+): a split node points at node \[\d+, \1\]"),
    (_leaf_item_far, r"node \d+: a leaf lists an item id outside"),
    (_negative_count, r"node \d+: n_descendants=-7 outside"),
    (_nan_plane, r"node \d+: its vector holds NaN"),
])
def test_crafted_node_pointers_are_refused_before_annoy_maps_the_file(tmp_path, edit, message):
    path, record = crafted(tmp_path, edit)
    with pytest.raises(IndexIntegrityError, match=message):
        open_annoy(path, record, 3, 3)  # sha256 and size match: only the pointer check stands between


def test_pointer_check_walks_the_file_in_chunks(tmp_path, monkeypatch):
    from indexer.store import annoy_index

    monkeypatch.setattr(annoy_index, "CHECK_CHUNK_BYTES", 4 * WORDS * 7)  # 7 nodes per numpy pass
    path, record = crafted(tmp_path, lambda words, k: None)
    open_annoy(path, record, 3, 3).unload()
    path, record = crafted(tmp_path, _split_child_far)
    with pytest.raises(IndexIntegrityError, match="100000000"):
        open_annoy(path, record, 3, 3)
