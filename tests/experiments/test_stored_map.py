"""The stored mAP is Ultralytics' own number for the run's best.pt: the one documented command gives it again.

A fine-tune grid (the embedded base, baseline + se in the neck, 1 epoch at 160 px with the demo's gentle recipe)
is trained; for every run the command the row records (``config.val.command``, shown by the report) is replayed
through Ultralytics' ``val`` with exactly its arguments, and must give the stored mAP50-95 and mAP50 bit for bit;
the trainer's final validation (recorded beside it) must be the same number.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from attnyolo.experiments import ablate
from attnyolo.yolo_args import check_cli_args

BASE = Path(__file__).resolve().parents[2] / "attnyolo" / "data" / "base_yolov8n_bccd.safetensors"


@pytest.mark.slow
def test_stored_map_equals_the_documented_ultralytics_command(default_data, tmp_path):
    from ultralytics import YOLO
    from ultralytics.cfg import smart_value

    folder = tmp_path / "grid"
    grid = {"data": str(default_data), "weights": str(BASE), "attention": ["se"], "where": "neck", "seeds": [0],
            "recipe": {"epochs": 1, "imgsz": 160, "batch": 8, "workers": 0, "plots": False,
                       "optimizer": "AdamW", "lr0": 1e-4, "warmup_epochs": 0, "mosaic": 0}}  # fmt: skip
    store = ablate(grid, out=folder)
    rows = store.runs("done")
    store.close()
    assert len(rows) == 2
    for row in rows:
        val = row["config"]["val"]
        words = shlex.split(val["command"])
        assert words[:3] == ["attnyolo", "yolo", "val"]
        check_cli_args(words[2:])  # a command the CLI accepts as written
        args = dict(w.split("=", 1) for w in words[3:])
        model = folder / args.pop("model")
        overrides = {k: smart_value(v) for k, v in args.items()}  # the CLI's own conversion of the values
        metrics = YOLO(str(model)).val(**overrides, plots=False, verbose=False)
        assert float(metrics.box.map) == row["map50_95"], row["run_id"]
        assert float(metrics.box.map50) == row["map50"], row["run_id"]
        assert val["trainer_final_map50_95"] == row["map50_95"], row["run_id"]
        assert row["map50_95"] > 0.05  # a fine-tuned detector, not a trivial 0 == 0
