"""The tiny grid on a local Ray instance gives the rows of the local executor; each run is marked started when
a worker begins it, and its epochs show in the progress."""

from __future__ import annotations

import io

import pytest
from grid_helpers import assert_same_rows, differences
from rich.console import Console

from attnyolo.experiments import ablate
from attnyolo.experiments.executors import default_threads
from attnyolo.experiments.store import ResultsStore

pytestmark = pytest.mark.slow


def test_ray_executor_gives_the_local_rows(clean_grid, grid_config, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # same torch thread count as the local run; tolerances in grid_helpers
    log = io.StringIO()
    console = Console(file=log, force_terminal=False, width=200)
    threads = default_threads(1)
    store = ablate(grid_config, out=tmp_path / "grid", executor="ray", ray_num_cpus=threads, threads=threads,
                   console=console)  # fmt: skip
    rows = store.runs(None)
    assert store.integrity() == "ok"
    store.close()
    with ResultsStore(clean_grid) as clean:
        clean_rows = clean.runs(None)
    print(f"ray vs local, largest differences: {differences(rows, clean_rows)}")
    assert_same_rows(rows, clean_rows)
    # One run at a time fits the instance, so each started (on its worker) once the one before had finished:
    # marked at submission, they would all share the first run's start.
    by_start = sorted(rows, key=lambda r: (r["started"], r["finished"]))
    print([(r["run_id"], r["started"], r["finished"]) for r in by_start])
    for before, after in zip(by_start, by_start[1:], strict=False):
        assert after["started"] >= before["finished"], (before, after)
    for r in rows:
        assert f"ablate: {r['run_id']} epoch 1/1" in log.getvalue()  # per-epoch progress from the Ray workers
