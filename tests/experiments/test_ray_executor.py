"""The tiny grid on a local Ray instance gives the rows of the local executor; each run is marked started when
a worker begins it, and its epochs show in the progress."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from grid_helpers import assert_same_rows, differences
from rich.console import Console

from attnyolo.checkpoints import load_checkpoint
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
    assert_same_rows(rows, clean_rows, exact=True)
    # One run at a time fits the instance, so each started (on its worker) once the one before had finished:
    # marked at submission, they would all share the first run's start.
    by_start = sorted(rows, key=lambda r: (r["started"], r["finished"]))
    print([(r["run_id"], r["started"], r["finished"]) for r in by_start])
    for before, after in zip(by_start, by_start[1:], strict=False):
        assert after["started"] >= before["finished"], (before, after)
    for r in rows:
        assert f"ablate: {r['run_id']} epoch 1/1" in log.getvalue()  # per-epoch progress from the Ray workers
        # the workers see the driver's folder (one machine): they train in it, nothing travels (issue 23, item 2)
        assert r["config"]["train_args"]["save_dir"] == str((tmp_path / "grid" / "runs" / r["run_id"]).resolve())


BASE = Path(__file__).resolve().parents[2] / "attnyolo" / "data" / "base_yolov8n_bccd.safetensors"


def test_a_fine_tuning_grid_with_a_class_change_gives_the_same_rows_sequentially_and_on_ray(
    one_class_data, tmp_path, monkeypatch
):
    """Issue 20, item 1: with --weights, the tensors new in a run (attention, the class convs of 3 -> 1 classes)
    were drawn unseeded, so the same grid scored differently on each executor. Now every number is equal."""
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    grid = {"data": str(one_class_data), "weights": str(BASE), "attention": ["cbam"], "where": "neck", "seeds": 2,
            "recipe": {"epochs": 1, "imgsz": 64, "batch": 16, "workers": 0, "device": "cpu", "plots": False,
                       "fraction": 0.25}}  # fmt: skip
    sequential = ablate(grid, out=tmp_path / "local", threads=1)
    on_ray = ablate(grid, out=tmp_path / "ray", executor="ray", ray_num_cpus=2, threads=1)
    a, b = sequential.runs(None), on_ray.runs(None)
    sequential.close()
    on_ray.close()
    print(f"ray vs sequential, largest differences: {differences(a, b)}")
    assert len(a) == 4 and all(r["state"] == "done" for r in a + b)
    assert_same_rows(a, b, exact=True)
    by_id = {r["run_id"]: r for r in b}
    for r in a:  # every learnt gamma, not only the last one, and the validation statistics
        assert r["gamma"] == by_id[r["run_id"]]["gamma"] and r["per_class_ap"] == by_id[r["run_id"]]["per_class_ap"]
    starts = [tmp_path / f / "runs" / "cbam@neck-s0" / "weights" / "start.pt" for f in ("local", "ray")]
    first, second = (load_checkpoint(p)["model"].state_dict() for p in starts)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
