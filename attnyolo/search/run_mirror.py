"""A search's run folders without a filesystem shared between the driver and its Ray workers.

A candidate trains for several rungs, and after a kill it continues from its ``last.pt``: the search keeps every
run folder in ``SEARCH_DIR/runs/<candidate>`` on the driver's machine. A worker that sees that folder (the same
machine, or shared storage mounted at the same path: :func:`attnyolo.experiments.shipping.sees_driver_folder`)
trains there. Any other worker trains in a folder of its own disk
(:func:`attnyolo.experiments.shipping.worker_grid_dir`) and mirrors it through Ray to :class:`RunKeeper`, an actor
the driver starts on its own node, which writes it into ``SEARCH_DIR/runs/<candidate>``:

- when the trial starts, the worker takes the driver's copy of the run (nothing: a new run), so a candidate killed
  on one node continues on any other from the epochs the driver holds, never from a worker's stale leftovers;
- after every epoch, once Ultralytics has validated it and saved ``last.pt``, and before that epoch's score is
  reported to ASHA, the worker sends the run folder (:func:`attnyolo.experiments.shipping.pack_run`, ``last.pt``
  included: the resume needs it), so a score ASHA saw is never missing from the driver's folder. Ray Tune ends a
  trial at the report that stops it (ASHA's cut, or the last rung), so this per-epoch copy is the whole record.

A trial's folder stays on its worker (a few MB in the temporary folder, :data:`shipping.WORKER_DIR_ENV`), replaced
by the driver's copy if the candidate trains there again.

Only Ray's object store carries the files; ``SEARCH_DIR/tune`` (Ray Tune's ``storage_path``) needs no sharing either
(a search reports no Ray Tune checkpoints).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray

from attnyolo.experiments import shipping

NAMESPACE = "attnyolo"
SEARCH_LEFT_ON_WORKER = ("weights/start.pt", "weights/epoch*.pt")
"""Not mirrored: the start model (rebuilt from the search's arguments) and ``save_period`` snapshots."""
KEEPER_TIMEOUT_S = 600.0
"""Seconds a worker waits for the keeper to take or give a run folder (a few MB) before the trial fails."""


def keeper_name(token: str) -> str:
    return f"attnyolo-search-runs-{token}"


class RunKeeper:
    """The driver's side: keeps ``runs_dir/<candidate>`` as the workers send it (an actor on the driver's node)."""

    def __init__(self, runs_dir: str) -> None:
        self.runs_dir = Path(runs_dir)

    def ready(self) -> bool:
        return True

    def take(self, label: str, files: dict[str, bytes]) -> int:
        shipping.unpack_run(files, self.runs_dir, label)
        return len(files)

    def give(self, label: str) -> dict[str, bytes]:
        run_dir = self.runs_dir / shipping.check_run_id(label)
        return shipping.pack_run(run_dir, SEARCH_LEFT_ON_WORKER) if run_dir.is_dir() else {}


def start_keeper(runs_dir: Path) -> tuple[str, object]:
    """Start the keeper of ``runs_dir`` on this (the driver's) node: ``(token, actor)``. Kill the actor when done."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = shipping.grid_token(runs_dir)
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    keeper = ray.remote(num_cpus=0)(RunKeeper).options(
        name=keeper_name(token), namespace=NAMESPACE, scheduling_strategy=here
    )
    try:
        actor = keeper.remote(str(runs_dir.resolve()))
    except ValueError:  # the keeper of a killed session of this search, not yet gone with its driver
        ray.kill(ray.get_actor(keeper_name(token), namespace=NAMESPACE))
        actor = keeper.remote(str(runs_dir.resolve()))
    ray.get(actor.ready.remote(), timeout=KEEPER_TIMEOUT_S)  # up before any trial asks for it by name
    return token, actor


@dataclass
class RunPlace:
    """Where a trial trains its candidate: ``runs_dir`` (``run_dir = runs_dir / label``), and ``sync``, called after
    each epoch (a no-op when ``runs_dir`` is the driver's own)."""

    runs_dir: Path
    sync: Callable[[], None]


def place_run(search_runs: Path, token: str | None, label: str) -> RunPlace:
    """The worker's side: the driver's ``search_runs`` when this worker sees it (or no ``token`` was given), else
    this worker's own folder, filled with the driver's copy of the run and mirrored back after every epoch."""
    if token is None or shipping.sees_driver_folder(search_runs, token):
        return RunPlace(search_runs, lambda: None)
    keeper = ray.get_actor(keeper_name(token), namespace=NAMESPACE)
    runs_dir = shipping.worker_grid_dir(token) / "runs"
    run_dir = runs_dir / shipping.check_run_id(label)
    files = ray.get(keeper.give.remote(label), timeout=KEEPER_TIMEOUT_S)
    if files:
        shipping.unpack_run(files, runs_dir, label)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # the driver holds nothing of it: whatever is here is stale

    def sync() -> None:
        if run_dir.is_dir():
            ray.get(keeper.take.remote(label, shipping.pack_run(run_dir, SEARCH_LEFT_ON_WORKER)),
                    timeout=KEEPER_TIMEOUT_S)  # fmt: skip

    return RunPlace(runs_dir, sync)
