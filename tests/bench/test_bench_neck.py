"""Smoke test of the detector benchmark (``python -m attnyolo.bench neck``); the benchmark itself is run by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnyolo.bench.neck import base_model, compared_models
from attnyolo.registry import describe

ROOT = Path(__file__).resolve().parents[2]


def test_ours_and_the_hand_inserted_reference_compute_the_same_detector():
    # at gamma = 1 the adapter is the module itself: the two models timed side by side must agree
    raw, sources, shapes = base_model("yolov8n.yaml", 64)
    assert sources == [15, 18, 21] and [c for c, _, _ in shapes] == [64, 128, 256]
    ours, ref, source = compared_models(describe("se"), "yolov8n.yaml", raw, sources, shapes, gamma=1.0)
    assert source.endswith("SEModule")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        outs = [net(x) for net in (ours, ref, raw.eval())]
    feats = [out[1]["feats"] for out in outs]  # the three maps the head reads (after the attention)
    for a, b, base in zip(*feats, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert (a - base).abs().max() > 0.1 * base.abs().max()  # the attention does change the detector


@pytest.mark.slow
def test_neck_command_prints_overheads_of_ours_and_timm_with_the_load_average():
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "attnyolo.bench", "neck", "--only", "se", "--imgsz", "64", "--repeat", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.strip("│ ").startswith("se "))
    assert "SEModule" in row and row.count("%") == 2
    assert "load average" in out.stdout
