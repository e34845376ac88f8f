"""A local Ray instance on which the runs cannot start: one error in bounded time, the runs left pending."""

from __future__ import annotations

import time

import pytest

from attnyolo.experiments import ablate, ray_executor
from attnyolo.experiments.executors import ExecutorError
from attnyolo.experiments.store import ResultsStore

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def _pending_untouched(folder) -> None:
    with ResultsStore(folder) as store:
        rows = store.runs(None)
        assert store.integrity() == "ok"
    assert rows and all(r["state"] == "pending" and r["attempts"] == 0 and r["started"] is None for r in rows)


def test_runs_no_node_can_hold_are_refused_in_one_line(grid_config, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    with pytest.raises(ExecutorError, match=r"asks Ray for 2 CPUs \(--threads\) but no Ray node has more than 1"):
        ablate(grid_config, out=tmp_path / "grid", executor="ray", ray_num_cpus=1, threads=2, ray_timeout=60)
    assert not ray.is_initialized()
    _pending_untouched(tmp_path / "grid")


def test_no_run_starting_stops_the_grid_after_the_timeout(grid_config, tmp_path, monkeypatch):
    """Tasks Ray accepts but never starts (here: more CPUs than the instance has, with the up-front check off, as
    when workers cannot reach their cluster): the grid stops once ``ray_timeout`` has passed without a start."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setattr(ray_executor, "check_fits", lambda threads, gpus: None)
    t0 = time.monotonic()
    # the start wait normally fires; on a heavily loaded machine the instance's own health wait (same bound) can
    # fire first: either way the grid stops in bounded time with one line
    with pytest.raises(
        ExecutorError, match="Ray started none of the 6 runs within 25 s|the Ray cluster stopped answering for 25 s"
    ):
        ablate(grid_config, out=tmp_path / "grid", executor="ray", ray_num_cpus=1, threads=2, ray_timeout=25)
    seconds = time.monotonic() - t0
    print(f"stopped after {seconds:.1f} s")
    assert seconds < 25 + 60  # the timeout, plus starting and stopping a local Ray instance on a loaded machine
    assert not ray.is_initialized()
    _pending_untouched(tmp_path / "grid")
