"""Ordered, bounded-memory map over threads, each with its own worker object.

OpenCV releases the GIL inside SIFT extraction, descriptor matching and model fitting, so threads
use every core for local features (indexer/ranking/local_features.py, indexer/ranking/verify.py) without copying
the memory-mapped feature store into worker processes. OpenCV's objects are not thread-safe: each
thread builds its own worker with `make_worker`.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
from typing import Callable, Iterable, Iterator, Optional, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def ordered_map(make_worker: Callable[[], Callable[[In], Out]], items: Iterable[In],
                workers: Optional[int] = None, chunk: int = 64) -> Iterator[Out]:
    """`worker(item)` for every item, in input order; items are taken `chunk x workers` at a time,
    so memory stays bounded however long `items` is. One worker (or `workers=1`) runs inline."""
    workers = workers or default_workers()
    if workers == 1:
        worker = make_worker()
        yield from map(worker, items)
        return
    local = threading.local()

    def call(item: In) -> Out:
        if not hasattr(local, "worker"):
            local.worker = make_worker()
        return local.worker(item)

    source = iter(items)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        while True:
            batch = list(itertools.islice(source, chunk * workers))
            if not batch:
                return
            yield from pool.map(call, batch)
