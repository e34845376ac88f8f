"""Ultralytics' DDP launch file (``generate_ddp_file``) trains an edited model in a fresh interpreter, with
attnyolo's gamma log, transfer report and start check carried along (CPU: one process, no process group)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnyolo.data.check import check_data
from attnyolo.experiments.grid import Variant, resolve
from attnyolo.experiments.runner import configured_yolo, save_start, start_model
from attnyolo.graph import build

pytestmark = pytest.mark.slow


def _trainer(tmp_path: Path, data, name: str, tamper: bool = False):
    """A trainer set up as ``YOLO.train`` sets it up before it would launch DDP, for an SE-in-the-neck model
    fine-tuned from a base checkpoint."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    base = save_start(build("yolov8n.yaml", nc=3), tmp_path / "base.pt", str(data), {})
    grid = resolve({"data": str(data), "weights": str(base), "attention": ["se"]}, check=False)
    info = check_data(data)
    start = start_model(grid, Variant("se", "neck"), 0, int(info["nc"]), dict(info["names"]))
    start_pt = save_start(start.model, tmp_path / f"{name}-start.pt", str(data), {})
    yolo = configured_yolo(start_pt, start, name)
    args = {**yolo.overrides, "data": str(data), "task": "detect", "mode": "train", "epochs": 1, "imgsz": 64,
            "batch": 16, "workers": 0, "device": "cpu", "fraction": 0.25, "plots": False, "project": str(tmp_path),
            "name": name, "exist_ok": True}  # fmt: skip
    trainer = DetectionTrainer(overrides=args, _callbacks=yolo.callbacks)
    trainer.model = trainer.get_model(weights=yolo.model, cfg=yolo.model.yaml)
    if tamper:  # the model the launched process trains is no longer the transferred one
        with torch.no_grad():
            trainer.model.model[0].conv.weight.add_(1.0)
    return trainer


def _launch(trainer) -> subprocess.CompletedProcess:
    from ultralytics.utils.dist import generate_ddp_file

    file = Path(generate_ddp_file(trainer))
    try:
        assert "import attnyolo" not in file.read_text()  # the fresh process must find attnyolo by itself
        return subprocess.run([sys.executable, str(file)], capture_output=True, text=True, timeout=600)
    finally:
        file.unlink(missing_ok=True)
        file.with_suffix(".pt").unlink(missing_ok=True)


def test_ddp_file_trains_an_edited_model_in_a_fresh_process(tmp_path, default_data):
    proc = _launch(_trainer(tmp_path, default_data, "ddp"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    assert (run / "weights" / "best.pt").is_file() and (run / "results.csv").is_file()
    with open(run / "attnyolo_gamma.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted({int(r["epoch"]) for r in rows}) == [0, 1] and len({r["layer"] for r in rows}) == 3
    assert all(float(r["gamma"]) == 0 for r in rows if r["epoch"] == "0")
    assert any(float(r["gamma"]) != 0 for r in rows if r["epoch"] == "1")
    assert "transferred" in (run / "attnyolo_transfer.txt").read_text().lower()


def test_ddp_file_keeps_the_start_check(tmp_path, default_data):
    proc = _launch(_trainer(tmp_path, default_data, "tampered", tamper=True))
    assert proc.returncode != 0
    assert "did not start from the transferred weights" in proc.stderr + proc.stdout
