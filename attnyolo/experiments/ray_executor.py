"""Runs as Ray tasks, on a local Ray instance or on a cluster (``--executor ray``). The driver alone writes results.

Each task reports to one small actor (:class:`EventLog`) when it actually starts on a worker and after every epoch;
the driver drains that log between its waits, so a run is marked ``running`` when a worker begins it (not when it
is queued) and the progress shows its epochs, wherever the worker runs. The results database stays on the driver:
workers need no access to the grid folder's SQLite file, only to the data and the base checkpoint.

No shared filesystem is assumed (:mod:`.shipping`): a worker that sees the driver's grid folder (the same machine,
or shared storage mounted at the same path) trains in it; any other trains in a folder of its own and returns the
run folder's files with the row, which the driver writes into ``GRID_DIR/runs/<run_id>`` before storing the row.

Every wait on Ray is bounded. Ray's own connect loop retries an unreachable cluster for ever, and a local instance
whose processes cannot talk to each other (no loopback) accepts tasks that never start; here an unreachable
``--address`` fails at once (a TCP probe), Ray gets ``timeout`` seconds to start or connect, and a grid of which
no run has started within ``timeout`` seconds stops with one line. Nothing is lost: runs that never started stay
``pending`` in the database, and the same command continues the grid later.

Ray is optional (``pip install 'attnyolo[ray]'``), so it is imported inside the functions that use it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attnyolo.errors import one_line
from attnyolo.experiments import shipping
from attnyolo.experiments.executors import (
    ExecutorError,
    OnDone,
    OnError,
    OnStart,
    Task,
    _error,
    _run_in_worker,
    cores,
)
from attnyolo.experiments.runner import RUNS

RAY_CONNECT_TIMEOUT_S = 60.0
"""Default seconds to start or reach Ray, and for the first run to start on a worker (``--ray-timeout``)."""
POLL_S = 0.5
"""Seconds between two looks at the event log while runs train (the delay of a start or epoch on the display)."""
PROBE_TIMEOUT_S = 10.0
README_RAY = "README, section 'Ray'"


class EventLog:
    """A Ray actor (0 CPUs) that collects ``(kind, run_id, ...)`` events from the tasks for the driver to drain."""

    def __init__(self) -> None:
        self._events: list[tuple] = []

    def put(self, event: tuple) -> None:
        self._events.append(event)

    def drain(self) -> list[tuple]:
        events, self._events = self._events, []
        return events


def run_with_events(task: Task, events: Any, token: str | None = None) -> dict:
    """The Ray task: tell the driver it started, train with an epoch callback that tells it too, return the result
    (with the run folder's files when this worker cannot see the driver's folder: see :func:`run_shipped`)."""
    run_id = task["run_id"]
    events.put.remote(("start", run_id))  # one caller's calls reach the actor in order: start, epochs

    def on_epoch(rid: str, epoch: int, epochs: int) -> None:
        events.put.remote(("epoch", rid, epoch, epochs))

    return run_shipped(task, token, on_epoch)


def run_shipped(task: Task, token: str | None, on_epoch: Callable | None = None) -> dict:
    """Run ``task`` on this worker: ``{"ok": row}`` or ``{"error": message}``, plus ``"files"`` when it trained away
    from the driver's folder.

    Where it trains: in the driver's ``GRID_DIR/runs/<run_id>`` when this worker sees that folder (its marker holds
    the grid's ``token``: the same machine, or shared storage at the same path), as the local executor does;
    otherwise in this worker's own grid folder (:func:`.shipping.worker_grid_dir`), whose run folder is then packed
    (:func:`.shipping.pack_run`) into the answer and removed. ``token`` ``None``: always the driver's folder.
    """
    if token is None or shipping.sees_driver_folder(Path(task["grid_dir"]) / RUNS, token):
        return _run_in_worker(task, on_epoch)
    try:
        run_id = shipping.check_run_id(task["run_id"])
        own = shipping.worker_grid_dir(token)
    except Exception as e:  # a message, as for any failed run
        return {"error": _error(e)}
    out = _run_in_worker({**task, "grid_dir": str(own)}, on_epoch)
    if "ok" not in out:
        return out  # its folder stays here: a resumable last.pt continues if the run comes back to this node
    run_dir = own / RUNS / run_id
    try:
        out["files"] = shipping.pack_run(run_dir)
    except Exception as e:
        return {"error": _error(e)}
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def receive_files(task: Task, out: Mapping[str, Any]) -> None:
    """The driver's side of :func:`run_shipped`: write a run's shipped files into its ``GRID_DIR/runs/<run_id>``
    (nothing to do for a run that trained in that folder)."""
    files = out.get("files")
    if files is not None:
        shipping.unpack_run(files, Path(task["grid_dir"]) / RUNS, task["run_id"])


def ray_gpus(task: Task) -> float:
    """GPUs a run asks Ray for: those listed in the recipe's ``device`` (none for ``cpu``/``mps``)."""
    device = str(dict(task["config"].get("recipe") or {}).get("device", "cpu") or "cpu")
    if device in {"cpu", "mps"}:
        return 0
    return float(len([d for d in device.split(",") if d.strip()]))


def probe(address: str | None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail at once, in one line, when ``HOST:PORT`` (or ``ray://HOST:PORT``) accepts no connection.

    Ray itself would retry such an address for ever. ``None`` (a local instance) and ``"auto"`` are not probed.
    """
    if not address or address == "auto":
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return  # Ray names a malformed address itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ExecutorError(
            f"cannot reach the Ray cluster at --address {address} ({reason}): start its head there with "
            f"`ray start --head --port {port}`, or check the address ({README_RAY})"
        ) from None


class _Timeout(Exception):
    """Raised in the main thread by the alarm that bounds a local Ray start."""


def _start_local(kwargs: dict, timeout: float) -> None:
    # A local instance is started in the main thread: its processes die with the thread that spawned them, so a
    # helper thread cannot start it. A timer signal bounds the start instead (checked between Python steps).
    import ray

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        ray.init(**kwargs)
        return

    def alarm(signum: int, frame: Any) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        ray.init(**kwargs)
    except _Timeout:
        ray.shutdown()
        raise ExecutorError(
            f"a local Ray instance did not start within {timeout:g} s (is the loopback interface up?); "
            f"raise --ray-timeout, or use --executor local"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _connect(address: str, kwargs: dict, timeout: float) -> None:
    # Connecting starts no process, so it can wait in a helper thread that is abandoned when the time is up
    # (a daemon thread: the process can still exit while Ray's connect loop retries).
    import ray

    failure: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, **kwargs)
        except BaseException as e:  # handed to the main thread below
            failure.append(e)

    thread = threading.Thread(target=connect, name="attnyolo-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ExecutorError(
            f"the Ray cluster at --address {address} did not answer within {timeout:g} s: check that its head runs "
            f"(`ray status --address {address}`) and its token (RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH; {README_RAY}), "
            "or raise --ray-timeout"
        )
    if failure:
        raise ExecutorError(f"cannot connect to the Ray cluster at --address {address}: {one_line(failure[0])}")


def init_ray(address: str | None, num_cpus: int | None, timeout: float) -> bool:
    """Start or join Ray within ``timeout`` seconds; return whether this call did (and must shut it down)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        _start_local({**kwargs, "num_cpus": num_cpus or cores()}, timeout)
    else:
        probe(address, min(timeout, PROBE_TIMEOUT_S))
        _connect(address, kwargs, timeout)
    return True


def shutdown() -> None:
    """Stop (or leave) the Ray instance :func:`init_ray` started (or joined)."""
    import ray

    ray.shutdown()


def check_fits(threads: int, gpus: float) -> None:
    """Refuse runs that no node of the cluster can hold (Ray would keep them queued for ever)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
    if most_cpus < threads:
        raise ExecutorError(
            f"each run asks Ray for {threads} CPUs (--threads) but no Ray node has more than {most_cpus:g}: "
            f"give --threads {max(1, int(most_cpus))} or fewer"
        )
    most_gpus = max((r.get("GPU", 0) for r in nodes), default=0)
    if most_gpus < gpus:
        raise ExecutorError(
            f"each run asks Ray for {gpus:g} GPUs (the recipe's device) but no Ray node has more than {most_gpus:g}"
        )


def run_ray(
    tasks: Sequence[Task],
    threads: int,
    on_start: OnStart,
    on_done: OnDone,
    on_error: OnError,
    on_epoch: Callable[[str, int, int], None] | None = None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    timeout: float = RAY_CONNECT_TIMEOUT_S,
) -> None:
    """Each run a Ray task asking for ``threads`` CPUs (and the GPUs of the recipe's ``device``).

    ``address`` ``None`` starts a local Ray instance (``num_cpus`` CPUs, no dashboard); ``"auto"``, ``HOST:PORT``
    or ``"ray://HOST:10001"`` joins a cluster, whose workers need attnyolo installed. ``on_start`` is called when
    a worker begins a run, ``on_epoch(run_id, epoch, epochs)`` after each of its epochs.

    Raises:
        ExecutorError: Ray did not start or answer within ``timeout`` s, no node can hold a run, or no run
            started within ``timeout`` s of submission. Runs not started stay as they were.
    """
    if not tasks:
        return
    import ray

    owned = init_ray(address, num_cpus, timeout)
    try:
        check_fits(threads, max(ray_gpus(t) for t in tasks))
        events = ray.remote(num_cpus=0)(EventLog).remote()
        remote = ray.remote(run_with_events)
        by_id = {t["run_id"]: t for t in tasks}
        # the marker that tells a worker whether it sees this folder (else its files come back through Ray)
        tokens = {d: shipping.grid_token(Path(d) / RUNS) for d in {t["grid_dir"] for t in tasks}}
        refs = {}
        for task in tasks:
            opts = {"num_cpus": threads, "num_gpus": ray_gpus(task), "max_retries": 0}
            refs[remote.options(**opts).remote(dict(task), events, tokens[task["grid_dir"]])] = task
        submitted = time.monotonic()
        started: set[str] = set()

        def start(task: Task) -> None:
            if task["run_id"] not in started:
                started.add(task["run_id"])
                on_start(task)

        def dispatch_events() -> None:
            try:
                batch = ray.get(events.drain.remote(), timeout=timeout)
            except ray.exceptions.GetTimeoutError:
                raise ExecutorError(f"the Ray cluster stopped answering for {timeout:g} s") from None
            for kind, run_id, *rest in batch:
                if kind == "start":
                    start(by_id[run_id])
                elif kind == "epoch" and on_epoch is not None:
                    on_epoch(run_id, *rest)

        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S)
            dispatch_events()
            for ref in ready:
                task = refs.pop(ref)
                start(task)  # a run that failed before its start event arrived
                try:
                    out = ray.get(ref, timeout=timeout)
                except Exception as e:  # the task or its worker died
                    on_error(task, _error(e))
                    continue
                if "ok" not in out:
                    on_error(task, out["error"])
                    continue
                try:  # its files are in the driver's run folder before its row is stored
                    receive_files(task, out)
                except Exception as e:
                    on_error(task, f"its files could not be written on the driver: {_error(e)}")
                    continue
                on_done(task, out["ok"])
            if not started and time.monotonic() - submitted > timeout:
                raise ExecutorError(
                    f"Ray started none of the {len(tasks)} runs within {timeout:g} s (a cluster without free "
                    f"CPUs, or workers that cannot reach it); the runs stay pending: raise --ray-timeout, or "
                    "use --executor local"
                )
    finally:
        if owned:
            ray.shutdown()
