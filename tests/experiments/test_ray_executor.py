"""The tiny grid on a local Ray instance gives the rows of the local executor."""

from __future__ import annotations

import pytest
from grid_helpers import assert_same_rows, differences

from attnyolo.experiments import ablate
from attnyolo.experiments.executors import default_threads
from attnyolo.experiments.store import ResultsStore

pytestmark = pytest.mark.slow


def test_ray_executor_gives_the_local_rows(clean_grid, grid_config, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # same torch thread count as the local run; tolerances in grid_helpers
    store = ablate(grid_config, out=tmp_path / "grid", executor="ray", ray_num_cpus=2, threads=default_threads(1))
    rows = store.runs(None)
    assert store.integrity() == "ok"
    store.close()
    with ResultsStore(clean_grid) as clean:
        clean_rows = clean.runs(None)
    print(f"ray vs local, largest differences: {differences(rows, clean_rows)}")
    assert_same_rows(rows, clean_rows)
