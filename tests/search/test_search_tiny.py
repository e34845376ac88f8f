"""A tiny real search end to end on a local Ray instance (2 CPUs, no dashboard): 2 modules x 2 places fine-tuned from
the embedded base checkpoint, 1-epoch rungs (after the 1-epoch attention warm-up) at imgsz 64, then the top one
through a seeded ablate grid."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml

from attnyolo.experiments.run_hosts.csv_rows import read_csv
from attnyolo.search import search
from attnyolo.search.trainable import MAP_KEY

pytestmark = pytest.mark.slow

BASE = Path(__file__).resolve().parents[2] / "attnyolo" / "data" / "base_yolov8n_bccd.safetensors"
RECIPE = {"imgsz": 64, "batch": 16, "workers": 0, "device": "cpu", "plots": False, "fraction": 0.25}


def asha_keeps(scores: list[float], eta: int) -> list[bool]:
    """ASHA's documented rule for candidates arriving one after another at a rung: go on when the score is at least
    the 1 - 1/eta quantile (linear interpolation) of the scores recorded there before (the first always goes on)."""
    return [j == 0 or s >= np.percentile(scores[:j], (1 - 1 / eta) * 100) for j, s in enumerate(scores)]


def test_a_tiny_search_records_every_rung_and_ends_with_verdicts(default_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    out = tmp_path / "search"
    result = search(
        "se,eca", "neck,inside", data=default_data, weights=BASE, out=out, recipe=RECIPE, grace=1, eta=2, rungs=2,
        top=1, seeds=2, ray_num_cpus=2, resamples=200,
    )  # fmt: skip
    conn = sqlite3.connect(f"file:{out / 'search.sqlite'}?mode=ro", uri=True)
    rows = conn.execute("SELECT label, rung, epoch, map50_95 FROM rungs ORDER BY rung, rowid").fetchall()
    labels = [r[0] for r in conn.execute("SELECT label FROM candidates ORDER BY position")]
    conn.close()
    assert labels == ["se@neck", "se@inside", "eca@neck", "eca@inside"]

    # every candidate has its first rung (epoch 1); the second (epoch 2) holds those ASHA kept, one at a time in order
    first = {label: score for label, rung, epoch, score in rows if rung == 0 and epoch == 1}
    assert sorted(first) == sorted(labels)
    second = {label for label, rung, epoch, _ in rows if rung == 1 and epoch == 2}
    kept = asha_keeps([first[label] for label in labels], eta=2)
    assert second == {label for label, k in zip(labels, kept, strict=True) if k}
    assert len(rows) == 4 + len(second)

    # the rungs count after the default recipe's 1-epoch attention warm-up: rung 0 is the run's epoch 2 (the first
    # epoch of the whole model), rung 1 its epoch 3; the confirmation trains the same recipe for the same 3 epochs
    stored = yaml.safe_load((out / "search.yaml").read_text())
    assert stored["lead_in"] == 1 and stored["grid"]["attention_recipe"]["warmup_epochs"] == 1
    for label, _, epoch, score in rows:
        csv = {int(r["epoch"]): r for r in read_csv(out / "runs" / label / "results.csv")}
        assert score == pytest.approx(csv[epoch + 1][MAP_KEY], abs=1e-5)  # results.csv keeps 5 digits
    confirm_grid = yaml.safe_load((out / "confirm" / "grid.yaml").read_text())
    assert confirm_grid["attention_recipe"] == stored["grid"]["attention_recipe"]
    assert confirm_grid["recipe"]["epochs"] == 3

    # the top candidate went through a seeded grid against the control: 2 variants x 2 seeds, all done
    assert result.top == [result.ranking[0]["label"]]
    conn = sqlite3.connect(f"file:{out / 'confirm' / 'ablate.sqlite'}?mode=ro", uri=True)
    runs = conn.execute("SELECT variant, seed, state FROM runs").fetchall()
    conn.close()
    assert len(runs) == 4 and {state for _, _, state in runs} == {"done"}
    assert result.verdicts is not None and len(result.verdicts.rows) == 2

    report = (out / "report.md").read_text()
    assert "**Rung scores are single short runs**" in report
    assert f"| 0 | 1 | 4 | {len(second)} |" in report and f"| 1 | 2 | {len(second)} | - |" in report
    verdict_table = report.split("## Confirmation: the verdicts")[1].split("## Rungs")[0]
    assert (
        "| variant | Δparams | ΔGFLOPs | mAP50-95 (mean ± std) | Δ mAP50-95 [interval] | verdict | seeds |"
        in verdict_table
    )
    for label in result.top:
        assert f"| {label} |" in verdict_table
    assert "| baseline |" in verdict_table
