"""The Beam embedding job's progress (indexer/embedding/embed_progress.py): the driver counts each finished
shard file of this model onto the bar, resumed ones apart; no timing involved (polls are called
directly, or the thread's interval is longer than the test)."""

from __future__ import annotations

import os

import numpy as np

from indexer.embedding import embedding_shards
from indexer.embedding.embed import Embedded, list_shards
from indexer.embedding.embed_progress import ShardWatcher
from pipelines.cli import console

FINGERPRINT = "a" * 64


def _write(emb, shard: str, n: int, fingerprint: str = FINGERPRINT) -> None:
    """A finished file for `shard` holding n (made-up) embeddings."""
    part = Embedded([f"{os.path.basename(shard)}-{i}" for i in range(n)], np.zeros(n, np.int64),
                    np.zeros((n, 4), np.float32))
    embedding_shards.write(embedding_shards.output_path(str(emb), shard), part,
                           embedding_shards.shard_meta(shard, fingerprint))


def _bar(total: int) -> console.Progress:
    return console.Progress("references embedded", total, "img", every_s=3600, live=False)


def test_poll_counts_this_models_finished_shards_once(reference_shards, tmp_path):
    files = list_shards(str(reference_shards), ["train", "val"])
    emb = tmp_path / "emb"
    emb.mkdir()
    watcher = ShardWatcher(str(emb), files[:3], FINGERPRINT, _bar(100))
    assert watcher.poll() == 0 and watcher.note() == "0/3 shards"

    _write(emb, files[0], 7)
    _write(emb, files[1], 5, fingerprint="b" * 64)  # another model's: the job will redo it
    _write(emb, files[3], 9)  # a shard this job does not embed
    (emb / (os.path.basename(files[2]) + ".npz.tmp-1234")).write_bytes(b"half")  # a write in progress
    assert watcher.poll() == 7 and watcher.note() == "1/3 shards"
    assert watcher.poll() == 0, "a counted shard counts once"

    _write(emb, files[1], 5)  # the job redid it for this model
    (emb / os.path.basename(embedding_shards.output_path(str(emb), files[2]))).write_bytes(b"not a zip")
    assert watcher.poll() == 5 and watcher.note() == "2/3 shards"
    _write(emb, files[2], 3)
    assert watcher.poll() == 3 and watcher.images == 15 and watcher.note() == "3/3 shards"


def test_watching_counts_resumed_shards_apart_and_the_rest_by_the_end(reference_shards, tmp_path):
    files = list_shards(str(reference_shards), ["train", "val"])[:3]
    emb = tmp_path / "emb"
    emb.mkdir()
    _write(emb, files[0], 7)  # done by an earlier run: resumed
    bar = _bar(20)
    with ShardWatcher(str(emb), files, FINGERPRINT, bar, poll_s=3600).watching():
        assert (bar.n, bar.initial) == (7, 7)
        _write(emb, files[1], 5)
        _write(emb, files[2], 8)
    assert (bar.n, bar.initial) == (20, 7)
    assert bar.line().startswith("references embedded: 100% 20/20") and bar.line().endswith("3/3 shards]")
