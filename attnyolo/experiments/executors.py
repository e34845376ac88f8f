"""Where runs execute: in the driver, in local worker processes, or as Ray tasks (:mod:`.ray_executor`). The driver
alone writes results.

Every executor calls ``on_start(task)`` before a run, then ``on_done(task, result)`` or
``on_error(task, message)``; the driver turns these into database transactions, so resume behaves the same
whatever ran the runs.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attnyolo.errors import AttnYoloError
from attnyolo.experiments.runner import run_one

EXECUTORS = ("local", "ray")
RAY_INSTALL = "pip install 'attnyolo[ray]' (or pip install 'ray>=2.9')"

Task = Mapping[str, Any]
OnStart = Callable[[Task], None]
OnDone = Callable[[Task, dict], None]
OnError = Callable[[Task, str], None]


class ExecutorError(AttnYoloError):
    """An executor that cannot run here (unknown name, Ray missing, bad worker counts)."""


def cores() -> int:
    """CPU cores this process may use (its affinity, which containers and taskset restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(workers: int) -> int:
    """Torch threads per worker so that ``workers * threads`` does not exceed the cores."""
    return max(1, cores() // max(1, workers))


def check_executor(executor: str, workers: int, threads: int | None) -> None:
    """Refuse an unknown executor, bad counts, or Ray when it is not installed (before anything is written)."""
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ExecutorError(f"--workers must be an integer >= 1, got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ExecutorError(f"--threads must be an integer >= 1, got {threads!r}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ExecutorError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None


def _error(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(e).__name__}: {' '.join(str(e).split())}{where}"


def run_sequential(
    tasks: Sequence[Task], on_start: OnStart, on_done: OnDone, on_error: OnError, on_epoch: Callable | None = None
) -> None:
    """Each run in this process, one after the other."""
    for task in tasks:
        on_start(task)
        try:
            result = run_one(task, on_epoch)
        except Exception as e:  # a failed run is recorded; the grid goes on
            on_error(task, _error(e))
        else:
            on_done(task, result)


def _init_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _run_in_worker(task: Task, on_epoch: Callable | None = None) -> dict:
    try:
        return {"ok": run_one(task, on_epoch)}
    except Exception as e:  # ship the message back, not an exception that may not unpickle
        return {"error": _error(e)}


def run_processes(
    tasks: Sequence[Task], workers: int, threads: int, on_start: OnStart, on_done: OnDone, on_error: OnError
) -> None:
    """Runs in ``workers`` fresh processes (spawned: no state shared with the driver), ``threads`` each."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(
        workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
        max_tasks_per_child=1,
    ) as pool:
        pending: dict = {}
        queue = list(tasks)
        while queue or pending:
            while queue and len(pending) < workers:  # submit as slots free up: "running" means running
                task = queue.pop(0)
                on_start(task)
                pending[pool.submit(_run_in_worker, task)] = task
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                task = pending.pop(future)
                try:
                    out = future.result()
                except Exception as e:  # the worker process died
                    on_error(task, _error(e))
                    continue
                on_done(task, out["ok"]) if "ok" in out else on_error(task, out["error"])
