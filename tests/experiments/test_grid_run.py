"""The tiny grid run by the local executor: six done rows, every column filled, files the interface promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from grid_helpers import INTERFACE_COLUMNS

from attnyolo.experiments import valstats
from attnyolo.experiments.store import ResultsStore

pytestmark = pytest.mark.slow


def test_tiny_grid_stores_six_done_rows_with_every_column_filled(clean_grid):
    with ResultsStore(clean_grid) as store:
        rows = store.runs(None)
        grid = store.grid()
    assert [r["run_id"] for r in rows] == [
        "baseline-s0", "se@neck-s0", "eca@neck-s0", "baseline-s1", "se@neck-s1", "eca@neck-s1",
    ]  # fmt: skip
    assert all(r["state"] == "done" for r in rows)
    for r in rows:
        for col in INTERFACE_COLUMNS:
            if col == "error" or (r["is_baseline"] and col in {"attention", "placement"}):
                assert r[col] is None, (r["run_id"], col)
            elif col == "git_rev":
                continue  # None outside a git checkout, by the interface
            else:
                assert r[col] is not None and r[col] != "", (r["run_id"], col)
        assert len(r["epochs"]) == 1 and "metrics/mAP50-95(B)" in r["epochs"][0]
        assert set(r["per_class_ap"]) == {"RBC", "WBC", "Platelets"}
        assert r["config"]["seed"] == r["seed"] and r["config"]["train_args"]["seed"] == r["seed"]
        run_dir = clean_grid / r["run_dir"]
        assert (run_dir / "results.csv").is_file() and (run_dir / "weights" / "best.pt").is_file()
        assert (run_dir / "attnyolo_gamma.csv").is_file() == (not r["is_baseline"])
        assert bool(r["gamma"]) == (not r["is_baseline"])
    baseline, se = rows[0], rows[1]
    assert se["params"] > baseline["params"] and se["gflops"] > baseline["gflops"]
    assert {g["epoch"] for g in se["gamma"]} == {0, 1} and all(g["gamma"] == 0 for g in se["gamma"] if g["epoch"] == 0)
    assert grid["finished"] is not None and grid["wall_seconds"] > 0
    assert set(grid["versions"]) == {"attnyolo", "torch", "ultralytics", "python"}
    assert set(grid["machine"]) == {"cpu", "cores", "gpu", "os"}
    assert yaml.safe_load((clean_grid / "grid.yaml").read_text()) == grid["config"]


def test_val_stats_give_back_the_stored_map(clean_grid):
    from ultralytics.utils.metrics import ap_per_class

    with ResultsStore(clean_grid) as store:
        rows = store.runs()
    images = None
    for r in rows:
        s = valstats.load(clean_grid / r["val_stats"])
        assert s["tp"].dtype == bool and s["tp"].shape == (len(s["conf"]), 10)
        assert len(s["pred_img"]) == len(s["conf"]) and len(s["target_img"]) == len(s["target_cls"])
        assert list(s["names"]) == ["RBC", "WBC", "Platelets"]
        assert list(s["images"]) == sorted(s["images"]) and (images is None or list(s["images"]) == images)
        images = list(s["images"])
        if len(s["conf"]) == 0:
            assert r["map50_95"] == 0
            continue
        ap = ap_per_class(s["tp"], s["conf"], s["pred_cls"], s["target_cls"])[5]  # (nc, 10) AP per IoU
        assert abs(float(ap.mean()) - r["map50_95"]) < 1e-6 and abs(float(ap[:, 0].mean()) - r["map50"]) < 1e-6


def test_running_the_same_grid_again_redoes_nothing(clean_grid, grid_config):
    from attnyolo.experiments import ablate

    db = Path(clean_grid) / "ablate.sqlite"
    before = ResultsStore(clean_grid).runs()
    store = ablate(grid_config, out=clean_grid)
    after = store.runs()
    store.close()
    assert [(r["run_id"], r["finished"], r["attempts"]) for r in after] == [
        (r["run_id"], r["finished"], r["attempts"]) for r in before
    ]
    assert db.is_file() and np.all([r["state"] == "done" for r in after])
