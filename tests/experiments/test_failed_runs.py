"""A run that raises is stored ``failed`` (with its error) and runs again on resume; the others are kept.

The run function is replaced by a fake (no training): the behaviour under test is the driver's and the store's
bookkeeping, which must not depend on what a run computes.
"""

from __future__ import annotations

import sqlite3

import pytest

from attnyolo.experiments import ablate, executors

FAILING = "se@neck-s0"


def _result(task: dict) -> dict:
    """A finished run's columns, distinct per run (so a kept row can be told from a re-run one)."""
    return {"params": 1000 + task["seed"], "gflops": 1.0, "latency_ms": 2.0, "latency_ratio": 1.0,
            "map50": 0.5, "map50_95": 0.25, "precision": 0.5, "recall": 0.5, "per_class_ap": {},
            "epochs": [], "train_seconds": 1.0, "run_dir": f"runs/{task['run_id']}", "val_stats": None,
            "gamma": [], "versions": {}, "git_rev": None, "config": {}}  # fmt: skip


def _rows(folder) -> dict[str, dict]:
    with sqlite3.connect(folder / "ablate.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        return {r["run_id"]: dict(r) for r in conn.execute("SELECT run_id, state, error, attempts FROM runs")}


@pytest.fixture
def grid(default_data) -> dict:
    return {"data": str(default_data), "model": "yolov8n.yaml", "attention": ["se"], "where": "neck", "seeds": 2,
            "recipe": {"epochs": 1, "imgsz": 64, "workers": 0}}  # fmt: skip


def test_a_run_that_raises_is_stored_failed_and_runs_again_on_resume(grid, tmp_path, monkeypatch):
    calls: list[str] = []

    def first(task, on_epoch=None):
        calls.append(task["run_id"])
        if task["run_id"] == FAILING:
            raise RuntimeError("out of memory (planted)")
        return _result(task)

    monkeypatch.setattr(executors, "run_one", first)
    folder = tmp_path / "grid"
    ablate(grid, out=folder).close()
    rows = _rows(folder)
    assert rows[FAILING]["state"] == "failed"
    assert "out of memory (planted)" in rows[FAILING]["error"]
    assert all(r["state"] == "done" for rid, r in rows.items() if rid != FAILING)
    assert len(calls) == 4

    resumed: list[str] = []

    def second(task, on_epoch=None):
        resumed.append(task["run_id"])
        return _result(task)

    monkeypatch.setattr(executors, "run_one", second)
    ablate(grid, out=folder).close()
    assert resumed == [FAILING]  # only the failed run runs again; the finished ones are kept
    rows = _rows(folder)
    assert rows[FAILING]["state"] == "done" and rows[FAILING]["error"] is None
    assert rows[FAILING]["attempts"] == 2
    assert all(r["state"] == "done" for r in rows.values())
