"""indexer/threads.py: order kept, one worker object per thread, input taken in bounded batches."""

from __future__ import annotations

import threading

from indexer.threads import ordered_map


def test_results_keep_input_order_and_each_thread_builds_its_own_worker():
    made = []

    def make_worker():
        made.append(threading.get_ident())
        return lambda x: (x * x, threading.get_ident())

    out = list(ordered_map(make_worker, range(200), workers=3, chunk=4))
    assert [v for v, _ in out] == [x * x for x in range(200)]
    assert len(made) == len(set(made)) <= 3  # at most one worker per thread
    assert {t for _, t in out} <= set(made)


def test_input_is_taken_a_batch_at_a_time():
    taken = []

    def source():
        for i in range(1000):
            taken.append(i)
            yield i

    results = ordered_map(lambda: (lambda x: x), source(), workers=2, chunk=5)
    assert next(results) == 0
    assert len(taken) <= 2 * 5 + 1  # one batch of chunk x workers (and the generator's look-ahead)
    assert list(results) == list(range(1, 1000))


def test_one_worker_runs_inline():
    assert list(ordered_map(lambda: (lambda x: threading.get_ident()), range(3), workers=1)) == [
        threading.get_ident()] * 3
