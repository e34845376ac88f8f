"""The rungs on Ray Tune: one trial per candidate, ASHA deciding at each rung, every rung recorded as it comes.

:func:`run_rungs` takes the trainable as an argument: attnyolo's run (:func:`attnyolo.search.trainable.train_candidate`)
for a search, a cheap stand-in in the tests of the schedule. Trials start in the candidates' order; with
``concurrency=1`` they run one after another, so ASHA's decisions are a function of the scores alone.

Each session is a fresh :class:`ray.tune.Tuner` (``SEARCH_DIR/tune/session-N``), not ``Tuner.restore``: what a
killed session finished lives in the run folders and is replayed by the trainable (see
:mod:`attnyolo.search.trainable`), so the record never depends on Ray Tune's own experiment state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from attnyolo.search.schedule import EPOCH, METRIC, Schedule
from attnyolo.search.store import SearchStore

TUNE_DIR = "tune"


class EpochBudget(tune.Stopper):
    """Once the epochs reported (trained, or replayed after a kill) reach the budget, no candidate goes beyond its
    first rung: each one not yet scored still gets that rung (ASHA runs candidates in order, so stopping the whole
    search would leave the last ones unscored), and every other is stopped at its next report."""

    def __init__(self, budget_epochs: int | None, grace: int) -> None:
        self.budget, self.grace = budget_epochs, grace
        self.seen: set[tuple[str, int]] = set()

    def __call__(self, trial_id: str, result: dict) -> bool:
        if EPOCH not in result or self.budget is None:
            return False
        self.seen.add((trial_id, int(result[EPOCH])))
        return len(self.seen) >= self.budget and int(result[EPOCH]) >= self.grace

    def stop_all(self) -> bool:
        return False


class RungRecorder(tune.Callback):
    """Writes a candidate's report to the store when its epoch is a rung (in the driver, as each report arrives).

    Ray Tune pickles its callbacks with the experiment's state: this one keeps the folder, and opens the store for
    each rung (a few per candidate) instead of holding a connection that cannot be pickled.
    """

    def __init__(self, folder: Path, schedule: Schedule) -> None:
        self.folder, self.schedule = Path(folder), schedule

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        epoch = result.get(EPOCH)
        rung = None if epoch is None else self.schedule.rung_of(int(epoch))
        if rung is not None:
            with SearchStore(self.folder) as store:
                store.add_rung(trial.config["label"], rung, int(epoch), result[METRIC], result.get("map50"))


def _session_dir(search_dir: Path) -> str:
    root = search_dir / TUNE_DIR
    n = len(list(root.glob("session-*"))) if root.is_dir() else 0
    return f"session-{n + 1}"


def run_rungs(
    store: SearchStore,
    labels: list[str],
    schedule: Schedule,
    trainable: Callable[[dict], None],
    trial_config: dict[str, Any],
    *,
    concurrency: int = 1,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    budget_epochs: int | None = None,
    budget_seconds: float | None = None,
) -> dict[str, str]:
    """Run every candidate in ``labels`` under ASHA; ``trial_config`` (plus ``label``) is each trial's config.

    Returns ``label -> error`` of the candidates whose trainable failed (their rungs before the error stay recorded;
    the other candidates go on)."""
    scheduler = ASHAScheduler(
        time_attr=EPOCH,
        metric=METRIC,
        mode="max",
        max_t=schedule.max_epochs,
        grace_period=schedule.grace,
        reduction_factor=schedule.eta,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        param_space={**trial_config, "label": tune.grid_search(list(labels))},
        tune_config=tune.TuneConfig(
            scheduler=scheduler, max_concurrent_trials=concurrency, time_budget_s=budget_seconds, reuse_actors=False
        ),
        run_config=tune.RunConfig(
            name=_session_dir(store.folder),
            storage_path=str((store.folder / TUNE_DIR).resolve()),
            stop=EpochBudget(budget_epochs, schedule.grace),
            callbacks=[RungRecorder(store.folder, schedule)],
            verbose=0,
            # a failed trial (one candidate's error) must not end the search; its rungs so far stay recorded
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )
    results = tuner.fit()
    failed = {}
    for result in results:
        if result.error is not None:
            failed[result.config["label"]] = " ".join(str(result.error).split())[-300:]
    return failed
