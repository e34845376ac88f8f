"""Comparisons shared by the ablation tests."""

from __future__ import annotations

INTERFACE_COLUMNS = (
    "run_id", "variant", "attention", "placement", "hparams", "seed", "state", "error", "params", "gflops",
    "latency_ms", "latency_ratio", "map50", "map50_95", "precision", "recall", "per_class_ap", "epochs",
    "train_seconds", "run_dir", "val_stats", "gamma", "versions", "git_rev", "config", "is_baseline",
)  # fmt: skip
# Metrics must agree between two executions of the same run: Ultralytics trains deterministically on CPU
# (deterministic=True, workers=0, same seed, same torch thread count), so the tolerance is float noise.
METRIC_TOLERANCE = 1e-6


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


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
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
            assert abs(value - y["losses"][key]) <= METRIC_TOLERANCE * max(1.0, abs(value)), (run_id, key)
        assert len(x["gamma"]) == len(y["gamma"])
        for (e1, l1, g1), (e2, l2, g2) in zip(x["gamma"], y["gamma"], strict=True):
            assert (e1, l1) == (e2, l2) and abs(g1 - g2) <= METRIC_TOLERANCE, (run_id, e1, l1, g1, g2)
