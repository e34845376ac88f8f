"""The shipped base checkpoint: pickle-free, loads through the safe loader, reproduces its recorded val mAP."""

from __future__ import annotations

import pytest
import torch

from attnyolo.checkpoints import load_safetensors_model, safetensors_metadata
from attnyolo.data.base_checkpoint import BASE_PATH, RECORDED, VAL_ARGS, load_base

TOLERANCE = 0.002
"""Absolute mAP tolerance: the same fp16 weights validated on another CPU may round a few boxes differently."""


def test_base_is_fp16_safetensors_with_its_yaml_and_loads_safely():
    assert BASE_PATH.read_bytes()[:2] != b"PK"  # not a pickle zip
    meta = safetensors_metadata(BASE_PATH)
    assert meta["format"] == "attnyolo.model" and "C2f" in meta["model_yaml"] and meta["nc"] == "3"
    half = load_safetensors_model(BASE_PATH)
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    model = load_base()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.names == {0: "RBC", 1: "WBC", 2: "Platelets"}
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 64, 64))
    assert y[0].shape[:2] == (1, 7)  # 4 box + 3 classes


@pytest.mark.slow
def test_base_reproduces_its_recorded_map_and_per_image_stats_give_the_same_map(tmp_path):
    from attnyolo.data import default_dataset
    from attnyolo.experiments import valstats
    from attnyolo.report.stats import map_ultralytics

    pt = tmp_path / "base.pt"
    torch.save({"model": load_base(), "train_args": {"task": "detect"}}, pt)  # our own file, for YOLO(path)
    stats, metrics = valstats.collect_with_metrics(pt, default_dataset(), VAL_ARGS["imgsz"], batch=VAL_ARGS["batch"])
    assert metrics.box.map50 == pytest.approx(RECORDED["map50"], abs=TOLERANCE)
    assert metrics.box.map == pytest.approx(RECORDED["map50_95"], abs=TOLERANCE)
    # Ultralytics' AP code over the stored per-image statistics gives back the validator's own result
    map50, map50_95, _, _ = map_ultralytics(stats)
    assert map50 == pytest.approx(float(metrics.box.map50), abs=1e-9)
    assert map50_95 == pytest.approx(float(metrics.box.map), abs=1e-9)
