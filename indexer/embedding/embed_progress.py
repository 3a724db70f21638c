"""The Beam embedding job's progress as the driver sees it: shards done and images, rate and ETA.

The job's workers (other processes, perhaps other machines) write one file per finished shard into
EMB (embedding_shards.py), and the driver itself only waits for the job. So while the job runs,
`ShardWatcher` lists EMB every `poll_s` seconds and counts on the driver's progress bar the images of
each shard whose file has appeared for this model (its meta names the shard, the shard's size, the
model's fingerprint and the `--tta` mode), with "done/all shards" beside the rate. Files already there when the
job starts are the shards it will resume: counted as done before (`Progress.skip`), out of the rate
and the ETA. A file is read once it is done, and a file that is not (another model's, a changed
shard's) only again when it is written again.
"""

from __future__ import annotations

import contextlib
import os
import threading
import zipfile
from typing import Dict, Iterator, Optional, Sequence, Set, Tuple

from absl import logging

from indexer.embedding import embedding_shards
from pipelines.cli import console

POLL_S = 2.0  # one listing of EMB per poll: cheap on a local disk and on gs:// alike


def _version(path: str) -> Tuple[int, ...]:
    """What changes when a file is written again: a local file's inode (every write renames a new
    file in) and time in ns; elsewhere size and time as gfile gives them (whole seconds on a local
    disk, hence not used there)."""
    import tensorflow as tf

    if "://" not in path:
        stat = os.stat(path)
        return stat.st_ino, stat.st_mtime_ns, stat.st_size
    stat = tf.io.gfile.stat(path)
    return stat.length, stat.mtime_nsec


class ShardWatcher:
    """Counts the finished shard files of one embedding job onto `progress`."""

    def __init__(self, embed_dir: str, shards: Sequence[str], model_fingerprint: str, progress: console.Progress,
                 poll_s: float = POLL_S, tta: str = "none") -> None:
        self._embed_dir, self._fingerprint, self._progress, self._poll_s = embed_dir, model_fingerprint, progress, poll_s
        self._tta = tta
        self._shards: Dict[str, str] = {os.path.basename(embedding_shards.output_path(embed_dir, s)): s for s in shards}
        self._looked: Dict[str, Tuple[int, ...]] = {}  # file name -> _version() when it was found not done
        self.done: Set[str] = set()  # file names of the shards counted
        self.images = 0

    def poll(self) -> int:
        """Look at EMB once; count the shards newly done and their images. Returns the images added."""
        import tensorflow as tf

        added = 0
        pattern = os.path.join(self._embed_dir, "*" + embedding_shards.SUFFIX)
        for path in sorted(tf.io.gfile.glob(pattern)):
            name = os.path.basename(path)
            if name not in self._shards or name in self.done:
                continue
            try:
                version = _version(path)
            except (OSError, tf.errors.NotFoundError):  # removed since the listing
                continue
            if self._looked.get(name) == version:
                continue
            self._looked[name] = version
            try:
                meta, part = embedding_shards.read(path)
            except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile):
                continue  # foreign or damaged: the job redoes it
            if embedding_shards.mismatches(meta, self._shards[name], self._fingerprint, self._tta):
                continue
            self.done.add(name)
            added += len(part.image_ids)
        self.images += added
        return added

    def note(self) -> str:
        return f"{len(self.done)}/{len(self._shards)} shards"

    def _count(self, resumed: bool) -> None:
        added = self.poll()
        if resumed:
            self._progress.skip(added)
        self._progress.note(self.note())
        if added and not resumed:
            self._progress.update(added)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._poll_s):
            try:
                self._count(resumed=False)
            except Exception as err:  # noqa: BLE001 - progress is for show: a failed listing never stops the job
                logging.debug("embedding progress: %s", err)

    @contextlib.contextmanager
    def watching(self) -> Iterator["ShardWatcher"]:
        """Around the whole job (start it inside): the done files first, as resumed; then a poll every
        `poll_s` seconds on a thread; a last one when the job is over."""
        self._count(resumed=True)
        stop = threading.Event()
        thread = threading.Thread(target=self._run, args=(stop,), name="embedding-progress", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
        self._count(resumed=False)


def watching(embed_dir: str, shards: Sequence[str], model_fingerprint: str,
             progress: Optional[console.Progress], tta: str = "none") -> contextlib.AbstractContextManager:
    """`ShardWatcher(...).watching()`, or nothing to do without a progress bar."""
    if progress is None:
        return contextlib.nullcontext()
    return ShardWatcher(embed_dir, shards, model_fingerprint, progress, tta=tta).watching()
