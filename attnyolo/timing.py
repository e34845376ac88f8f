"""Timing on a shared machine: calls timed in turns, so a change of load hits all of them alike.

Used by the benchmarks (:mod:`attnyolo.bench`) and by the grid's latency cost (:mod:`attnyolo.experiments.costs`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence


def interleaved_times(calls: Sequence[Callable[[], object]], repeat: int = 10, warmup: int = 2) -> list[list[float]]:
    """Seconds of each of ``repeat`` runs of every call in ``calls``, taking turns run by run.

    A load change on a shared machine then hits all of them alike. The order cycles through every
    permutation, because on CPU the call that runs right after another one pays for the memory that one
    freed (allocator and page-fault effects of up to 30%): a fixed or merely rotated order always gives the
    same call the same predecessor. (With many calls the permutations are cycled, not exhausted.)
    """
    times: list[list[float]] = [[] for _ in calls]
    orders = itertools.permutations(range(len(calls)))
    for i in range(warmup + repeat):
        order = next(orders, None)
        if order is None:
            orders = itertools.permutations(range(len(calls)))
            order = next(orders)
        for k in order:
            t0 = time.perf_counter()
            calls[k]()
            if i >= warmup:
                times[k].append(time.perf_counter() - t0)
    return times
