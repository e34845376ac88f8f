"""Comparisons shared by the ablation tests."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

INTERFACE_COLUMNS = (
    "run_id", "variant", "attention", "placement", "hparams", "seed", "state", "error", "params", "gflops",
    "latency_ms", "latency_ratio", "map50", "map50_95", "precision", "recall", "per_class_ap", "epochs",
    "train_seconds", "run_dir", "val_stats", "gamma", "versions", "git_rev", "config", "is_baseline",
)  # fmt: skip
# Two executions of the same run (same seed, deterministic=True, workers=0, same torch thread count) in different
# processes (driver vs. subprocess or Ray worker) give the same numbers, bit for bit: the start model is a pure
# function of (grid, variant, seed) (attnyolo.finetune.start.build_start) and Ultralytics seeds the training.
# The tolerances below were needed while the attention's start tensors depended on what the process had drawn
# before (the engine probes modules on a process's first insert; issue 20, item 1): losses then differed by up to
# 1.3e-3 and gamma by up to 0.029. They stay for callers that compare runs of different code paths; the executor
# and resume tests compare with exact=True. On this 1-epoch tiny grid mAP is 0, so the metric check is weak; the
# real-data equality of stored and recomputed mAP is checked in test_valstats.py.
METRIC_TOLERANCE = 1e-6
LOSS_TOLERANCE = 5e-3
GAMMA_TOLERANCE = 0.05


def comparable(rows: list[dict]) -> dict[str, dict]:
    """``run_id -> (state, params, gflops, metrics)`` of stored rows (what two executions must share)."""
    return {
        r["run_id"]: {
            "state": r["state"], "variant": r["variant"], "seed": r["seed"], "params": r["params"],
            "gflops": r["gflops"], "map50": r["map50"], "map50_95": r["map50_95"], "precision": r["precision"],
            "recall": r["recall"],
            # the training itself (non-zero even when a 1-epoch tiny run detects nothing): last epoch's losses...
            "losses": {k: v for k, v in (r["epochs"] or [{}])[-1].items() if "loss" in k},
            # ... and the gamma each inserted layer learnt
            "gamma": [(g["epoch"], g["layer"], g["gamma"]) for g in r["gamma"] or []],
        }
        for r in rows
    }  # fmt: skip


def differences(a: list[dict], b: list[dict]) -> dict[str, float]:
    """Largest absolute difference of each compared number over all runs (for the test's output)."""
    out: dict[str, float] = {}
    ca, cb = comparable(a), comparable(b)
    for run_id in set(ca) & set(cb):
        x, y = ca[run_id], cb[run_id]
        pairs = [(k, x[k], y[k]) for k in ("map50", "map50_95", "precision", "recall")]
        pairs += [(k, v, y["losses"].get(k, float("nan"))) for k, v in x["losses"].items()]
        pairs += [("gamma", g1, g2) for (_, _, g1), (_, _, g2) in zip(x["gamma"], y["gamma"], strict=False)]
        for k, u, v in pairs:
            out[k] = max(out.get(k, 0.0), abs(u - v))
    return out


def assert_same_rows(a: list[dict], b: list[dict], exact: bool = False) -> None:
    """Same runs, same costs, same metrics; losses and gamma within the tolerances above, or equal (``exact``)."""
    if exact:
        assert comparable(a) == comparable(b)
    ca, cb = comparable(a), comparable(b)
    assert sorted(ca) == sorted(cb)
    assert len(a) == len(ca) and len(b) == len(cb)  # no duplicate run ids
    for run_id in ca:
        x, y = ca[run_id], cb[run_id]
        for key in ("state", "variant", "seed", "params", "gflops"):
            assert x[key] == y[key], (run_id, key, x[key], y[key])
        for key in ("map50", "map50_95", "precision", "recall"):
            assert abs(x[key] - y[key]) <= METRIC_TOLERANCE, (run_id, key, x[key], y[key])
        assert x["losses"] and x["losses"].keys() == y["losses"].keys()
        for key, value in x["losses"].items():
            assert abs(value - y["losses"][key]) <= LOSS_TOLERANCE, (run_id, key, value, y["losses"][key])
        assert len(x["gamma"]) == len(y["gamma"])
        for (e1, l1, g1), (e2, l2, g2) in zip(x["gamma"], y["gamma"], strict=True):
            assert (e1, l1) == (e2, l2) and abs(g1 - g2) <= GAMMA_TOLERANCE, (run_id, e1, l1, g1, g2)


def states(db: Path) -> dict[str, str]:
    if not db.is_file():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return dict(conn.execute("SELECT run_id, state FROM runs ORDER BY position").fetchall())
    except sqlite3.OperationalError:  # tables not there yet
        return {}
    finally:
        conn.close()


def wait_until_training(folder: Path, proc: subprocess.Popen, timeout: float = 240) -> str:
    """The id of a variant run inside its training epoch while at least one run is done: its gamma log exists
    (written when training starts) and its results.csv does not yet (written when the epoch ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the grid ended (rc {proc.returncode}) before it could be killed")
        now = states(folder / "ablate.sqlite")
        for run_id in (r for r, s in now.items() if s == "running" and "done" in now.values()):
            run = folder / "runs" / run_id
            if (run / "attnyolo_gamma.csv").is_file() and not (run / "results.csv").exists():
                return run_id
        time.sleep(0.05)
    raise AssertionError("no run was training in time")


def tiny_grid(data) -> dict:
    """Baseline + 2 variants (se, eca in the neck) x 2 seeds x 1 epoch at 64 px on half of the embedded data."""
    return {
        "data": str(data),
        "model": "yolov8n.yaml",
        "attention": ["se", "eca"],
        "where": "neck",
        "seeds": 2,
        "recipe": {"epochs": 1, "imgsz": 64, "batch": 16, "workers": 0, "device": "cpu", "plots": False,
                   "fraction": 0.5},
    }  # fmt: skip
