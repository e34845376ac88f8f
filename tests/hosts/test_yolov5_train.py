"""The whole workflow on the embedded data through the YOLOv5 host, as a user runs it: YOLOv5's own train (1 epoch),
val and ONNX export, each command in its own process; the exported model reloads in a fresh process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from yolov5_helpers import requires_yolov5

pytestmark = [requires_yolov5, pytest.mark.slow]


ENTRY = "import sys; from attnyolo.cli import main; sys.exit(main(sys.argv[1:]))"  # `attnyolo ARGS`, this Python


def cli(*argv: str, cwd: Path) -> str:
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
    proc = subprocess.run(
        [sys.executable, "-c", ENTRY, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_insert_transfer_train_val_export_reload(tmp_path, small_data):
    cli("yolov5", "yaml", "yolov5n", "-o", "yolov5n.yaml", cwd=tmp_path)
    cli("insert", "yolov5n.yaml", "cbam", "--where", "neck", "-o", "yolov5n-cbam.yaml", cwd=tmp_path)
    cli("yolov5", "init", "yolov5n.yaml", "--nc", "3", "-o", "yolov5n.pt", cwd=tmp_path)
    cli("transfer", "yolov5n-cbam.yaml", "yolov5n.pt", "-o", "start.pt", cwd=tmp_path)
    common = ["imgsz=64", "batch_size=8", "device=cpu", "workers=0"]
    out = cli(
        "yolov5",
        "train",
        "--weights",
        "start.pt",
        "--data",
        str(small_data),
        "epochs=1",
        *common,
        f"project={tmp_path / 'runs'}",
        "name=train",
        cwd=tmp_path,
    )
    transferred = [line for line in out.splitlines() if line.startswith("Transferred ")]
    n, m = transferred[0].split()[1].split("/")
    assert n == m  # YOLOv5's own intersect_dicts kept every tensor of start.pt
    run = tmp_path / "runs" / "train"
    best = run / "weights" / "best.pt"
    assert best.is_file()
    with open(run / "attnyolo_gamma.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["attention"] == "cbam" for r in rows)
    assert any(float(r["gamma"]) != 0.0 for r in rows)  # gamma is in YOLOv5's optimiser: it left 0

    out = cli(
        "yolov5",
        "val",
        "--weights",
        str(best),
        "--data",
        str(small_data),
        *common,
        f"project={tmp_path / 'runs'}",
        "name=val",
        cwd=tmp_path,
    )
    assert "mAP50-95" in out

    out = cli("yolov5", "export", "--weights", str(best), "imgsz=64", "device=cpu", cwd=tmp_path)
    onnx = run / "weights" / "best.onnx"
    assert onnx.is_file() and f"wrote {onnx}" in out

    # a fresh process: the trained checkpoint through attnyolo's safe loader, and the ONNX file in onnxruntime
    check = (
        "import sys, numpy as np, torch, onnxruntime as ort, attnyolo\n"
        "from attnyolo.hosts.yolov5 import register\n"
        "register()\n"
        "m = attnyolo.load_checkpoint(sys.argv[1])['model'].float().eval()\n"
        "x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))\n"
        "y = m(x)[0].detach().numpy()\n"
        "s = ort.InferenceSession(sys.argv[2], providers=['CPUExecutionProvider'])\n"
        "z = s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]\n"
        "print('MAXDIFF', float(np.abs(y - z).max()), y.shape == z.shape)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check, str(best), str(onnx)], capture_output=True, text=True, timeout=600
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("MAXDIFF")]
    assert line, proc.stderr[-3000:]
    _, diff, same_shape = line[0].split()
    assert same_shape == "True" and float(diff) < 1e-2  # fp16 weights run in fp32 by both
