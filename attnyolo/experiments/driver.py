"""The grid driver behind ``attnyolo ablate`` and :func:`attnyolo.ablate`.

Order of work, so that bad input never touches a stored grid: resolve and check the grid (names, placements,
seeds, data, start, recipe) and the executor; then open the folder's database (refusing another grid, saying
what differs) or create it; put killed runs (``running`` with a dead owner) back to ``pending``; run every
run that is not ``done``; record each result in one transaction as soon as it arrives.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from attnyolo.atomic import write_atomically
from attnyolo.errors import AttnYoloError
from attnyolo.experiments import executors, ray_executor
from attnyolo.experiments.grid import Grid, GridError, differences, resolve
from attnyolo.experiments.progress import GridProgress
from attnyolo.experiments.run_hosts import DEFAULT_HOST
from attnyolo.experiments.runner import RunTask, git_rev, grid_class_change, machine, versions
from attnyolo.experiments.store import DB_NAME, GRID_YAML, ResultsStore, owner_id
from attnyolo.finetune.recipe import RECIPE_DEFAULT, RECIPE_NONE


class GridInterrupted(KeyboardInterrupt):  # noqa: N818  (a KeyboardInterrupt, named for what happened)
    """Ctrl-C during a grid, after its state was saved: what was kept and the command that resumes.

    Still a ``KeyboardInterrupt`` (code that stops on Ctrl-C keeps doing so); the CLI prints it as one line.
    """

    def __init__(self, db: Path, done: int, total: int, interrupted: list[str], resume: str) -> None:
        super().__init__(db, done, total, interrupted, resume)
        self.db, self.done, self.total, self.interrupted, self.resume = db, done, total, interrupted, resume

    def __str__(self) -> str:
        marked = f"; {', '.join(self.interrupted)} marked interrupted" if self.interrupted else ""
        return (
            f"interrupted: {self.done} of {self.total} runs done and kept in {self.db}{marked}; "
            f"resume with: {self.resume}"
        )


def resume_command(
    folder: Path, executor: str = "local", workers: int = 1, threads: int | None = None, address: str | None = None
) -> str:
    """The ``attnyolo ablate`` command line that continues ``folder`` with the same executor options."""
    argv = ["attnyolo", "ablate", "-o", str(folder), "--resume"]
    if executor != "local":
        argv += ["--executor", executor]
    if address:
        argv += ["--address", address]
    if workers != 1:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return shlex.join(argv)


def load_grid_yaml(path: str | os.PathLike) -> dict:
    """A grid YAML's content (a mapping), with a one-line error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise GridError(f"grid YAML {str(p)!r} does not exist")
    try:
        content = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise GridError(f"grid YAML {str(p)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(content, dict):
        raise GridError(f"grid YAML {str(p)!r} must be a mapping (data, model/weights, recipe, seeds, attention...)")
    return content


def _write_yaml(path: Path, content: Mapping) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(yaml.safe_dump(dict(content), sort_keys=False)))


DIFFERENCES_SHOWN = 3
DIFFERENCE_WIDTH = 90
"""A refused folder's message names at most this many differences, each at most this wide: one short line."""


def short_differences(diff: list[str]) -> str:
    """The differences between a stored and a given grid, short enough for one line (the rest counted)."""
    items = []
    for item in diff[:DIFFERENCES_SHOWN]:
        key = item.partition(":")[0]
        items.append(item if len(item) <= DIFFERENCE_WIDTH else f"{key}: stored and given differ")
    more = len(diff) - len(items)
    return "; ".join(items) + (f"; {more} more" if more else "")


def check_folder(folder: Path, grid: Grid) -> bool:
    """Refuse a folder that holds another grid, a damaged database, another live driver or foreign files (read-only:
    nothing is written); return whether it holds this grid's database already."""
    if (folder / DB_NAME).is_file():
        with ResultsStore(folder) as reader:
            diff = differences(reader.grid()["config"], grid.config())
            others = reader.live_owners()
        if diff:
            raise GridError(
                f"{folder} holds another grid ({short_differences(diff)}): give another --out folder, "
                f"or `attnyolo report {folder}` to read it"
            )
        if others:
            raise GridError(f"{folder} is being run by another process ({', '.join(others)})")
        return True
    if folder.exists() and any(p.name not in {GRID_YAML, "runs"} for p in folder.iterdir()):
        raise GridError(f"{folder} is not empty and holds no {DB_NAME}: give an empty or new --out folder")
    return False


def open_store(folder: Path, grid: Grid) -> ResultsStore:
    """The folder's store for ``grid``, open for writing: created if new, refused (see :func:`check_folder`) if the
    folder holds another grid or foreign files. An existing database is opened for writing only once it is known
    to be this grid's."""
    if check_folder(folder, grid):
        return ResultsStore(folder, writable=True)
    config = grid.config()
    store = ResultsStore.create(folder, config, machine(), versions(), git_rev())
    _write_yaml(folder / GRID_YAML, config)
    return store


def stored_config(folder: Path) -> dict | None:
    """The config of the grid stored in ``folder``'s database, or ``None`` when it holds none or cannot be read (a
    damaged or newer database: :func:`check_folder` refuses it in one line after the grid itself was checked)."""
    if not (folder / DB_NAME).is_file():
        return None
    try:
        with ResultsStore(folder) as reader:
            return dict(reader.grid()["config"])
    except AttnYoloError:
        return None


def with_attention_recipe(config: Mapping[str, Any], folder: Path) -> dict:
    """``config`` with the ``attention_recipe`` it means when it names none.

    A fine-tuning grid (``weights:``) that is new gets ``"default"`` (the engaging recipe,
    :func:`attnyolo.finetune.recipe.default_recipe`); one that continues ``folder``'s stored grid gets the stored
    value, and a grid stored without one (written before the default existed, or with ``none``) goes on without:
    every run of a grid has the schedule its first runs had. From-scratch grids (``model:``) get none, and so do
    grids on the YOLOv5 host (the recipe is a set of Ultralytics-trainer callbacks).
    """
    config = dict(config)
    if (
        "attention_recipe" in config
        or config.get("weights") is None
        or config.get("host", DEFAULT_HOST) != DEFAULT_HOST
    ):
        return config
    stored = stored_config(folder)
    config["attention_recipe"] = RECIPE_DEFAULT if stored is None else stored.get("attention_recipe", RECIPE_NONE)
    return config


def ablate(
    grid: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    out: str | os.PathLike = "runs/ablate",
    executor: str = "local",
    workers: int = 1,
    threads: int | None = None,
    address: str | None = None,
    ray_num_cpus: int | None = None,
    ray_timeout: float = ray_executor.RAY_CONNECT_TIMEOUT_S,
    console: Any = None,
    **options: Any,
) -> ResultsStore:
    """Run (or resume) an ablation grid; return its :class:`~attnyolo.experiments.store.ResultsStore`.

    Args:
        grid: a grid YAML path or dict (see :mod:`attnyolo.experiments.grid`); ``None`` with keyword options
            only, or to resume ``out`` from its own ``grid.yaml``.
        out: the grid folder (``ablate.sqlite``, ``grid.yaml``, ``runs/<run_id>/``). Running again on the same
            folder resumes: finished runs are kept, killed or failed runs run again.
        executor: ``"local"`` (default) or ``"ray"``.
        workers: local worker processes (1: every run in this process, sequentially).
        threads: torch threads per run (default: the cores divided by the workers: no oversubscription).
        address: Ray cluster address (``"auto"``, ``"ray://HOST:10001"``); ``None`` starts a local instance.
        ray_num_cpus: CPUs of a local Ray instance (default: all cores).
        ray_timeout: seconds to start or reach Ray before giving up with one line (nothing is lost: the grid
            folder stays as it was, resumable).
        console: a rich ``Console`` for progress.
        **options: grid keys (``data``, ``model``, ``weights``, ``recipe``, ``seeds``, ``attention``, ``where``,
            ``hparams``, ``variants``, ``identity_start``, ``trust``, ``freeze_epochs``, ``attention_recipe``),
            overriding the YAML's. A fine-tuning grid that names no ``attention_recipe`` gets the default one when
            it is new, and the one it was stored with when it resumes (:func:`with_attention_recipe`).

    Raises:
        GridError, ExecutorError and the engine's errors: bad input, before anything is written.
        GridInterrupted: Ctrl-C; finished runs are kept, the runs it stopped are marked ``interrupted``.
    """
    folder = Path(out)
    if isinstance(grid, (str, os.PathLike)):
        config = load_grid_yaml(grid)
    elif grid is None and not options and (folder / GRID_YAML).is_file():
        config = load_grid_yaml(folder / GRID_YAML)
    else:
        config = dict(grid or {})
    config.update({k: v for k, v in options.items() if v is not None})
    resolved = resolve(with_attention_recipe(config, folder))
    executors.check_executor(executor, workers, threads)
    if isinstance(ray_timeout, bool) or not isinstance(ray_timeout, (int, float)) or not ray_timeout > 0:
        raise executors.ExecutorError(f"--ray-timeout must be a number of seconds > 0, got {ray_timeout!r}")
    resume = resume_command(folder, executor, workers, threads, address)
    threads = threads or executors.default_threads(workers)
    if executor == "local" and workers * threads > executors.cores():
        (console or Console()).print(
            f"ablate: warning: {workers} workers x {threads} threads > {executors.cores()} cores (oversubscribed)"
        )

    change = grid_class_change(resolved)
    if change:  # every run's head starts its class convolutions anew: say so once, before the runs
        (console or Console()).print(f"ablate: {change}", soft_wrap=True)

    check_folder(folder, resolved)
    # Ray is started or reached before the folder is written: an unreachable cluster leaves it as it was.
    ray_owned = executor == "ray" and ray_executor.init_ray(address, ray_num_cpus, ray_timeout)
    try:
        _run_grid(
            folder, resolved, threads, executor, workers, {"address": address, "timeout": ray_timeout}, console, resume
        )
    finally:
        if ray_owned:
            ray_executor.shutdown()
    return ResultsStore(folder)


def _run_grid(
    folder: Path,
    resolved: Grid,
    threads: int,
    executor: str,
    workers: int,
    ray_options: dict[str, Any],
    console: Any,
    resume: str,
) -> None:
    store = open_store(folder, resolved)
    try:
        store.recover()
        store.add_runs(
            [
                {
                    "run_id": rid,
                    "variant": v.label,
                    "attention": v.attention,
                    "placement": v.where,
                    "hparams": v.hparams,
                    "seed": s,
                    "is_baseline": v.is_baseline,
                }
                for rid, v, s in resolved.runs()
            ]
        )
        todo_ids = {r["run_id"] for r in store.runs(None) if r["state"] != "done"}
        tasks = [
            RunTask(str(folder.resolve()), rid, resolved.config(), v.as_dict(), s, threads).__dict__
            for rid, v, s in resolved.runs()
            if rid in todo_ids
        ]
        _execute(store, tasks, len(resolved.runs()), executor, workers, threads, ray_options, console, resume)
    finally:
        store.close()


def _execute(
    store: ResultsStore,
    tasks: list[dict],
    total: int,
    executor: str,
    workers: int,
    threads: int,
    ray_options: dict[str, Any],
    console: Any,
    resume: str,
) -> None:
    me = owner_id()
    t0 = time.monotonic()
    started: set[str] = set()
    with GridProgress(total, total - len(tasks), console) as progress:

        def on_start(task: Mapping) -> None:
            store.mark_running(task["run_id"], me)
            started.add(task["run_id"])
            progress.start(task["run_id"])

        def on_done(task: Mapping, result: dict) -> None:
            store.mark_done(task["run_id"], result)
            started.discard(task["run_id"])
            progress.finish(task["run_id"], True, f"mAP50-95 {result['map50_95']:.4f}, {result['train_seconds']:.0f} s")

        def on_error(task: Mapping, message: str) -> None:
            store.mark_failed(task["run_id"], message)
            started.discard(task["run_id"])
            progress.finish(task["run_id"], False, message)

        complete = interrupted = False
        try:
            if executor == "ray":
                ray_executor.run_ray(tasks, threads, on_start, on_done, on_error, progress.epoch, **ray_options)
            elif workers > 1:
                executors.run_processes(tasks, workers, threads, on_start, on_done, on_error)
            else:
                executors.run_sequential(tasks, on_start, on_done, on_error, progress.epoch)
            complete = True
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            stopped = sorted(started)
            for run_id in stopped:  # interrupted (Ctrl-C): these did not finish; the next driver runs them again
                store.mark_failed(run_id, "interrupted")
            rows = store.runs(None)
            left = [r for r in rows if r["state"] != "done"]
            store.add_wall_seconds(time.monotonic() - t0, finished=complete and not left)
            if interrupted:  # replaces the bare KeyboardInterrupt with one that says what was kept
                done = len(rows) - len(left)
                raise GridInterrupted(store.path, done, len(rows), stopped, resume) from None
