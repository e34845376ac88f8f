"""Shared by the YOLOv5-host tests: skip without YOLOv5, its own YAMLs, and checkpoints written by its own code."""

from __future__ import annotations

import copy
import importlib.util
from datetime import datetime
from pathlib import Path

import pytest
import torch

from attnyolo.hosts.yolov5.entry import allow_file

INSTALLED = importlib.util.find_spec("yolov5") is not None
SKIP_REASON = "yolov5 is not installed (pip install --no-deps yolov5==7.0.14 && pip install -e '.[yolov5]')"
requires_yolov5 = pytest.mark.skipif(not INSTALLED, reason=SKIP_REASON)


def code():
    from attnyolo.hosts.yolov5 import register

    return register()  # the installed package (a clone only when ATTNYOLO_YOLOV5 is set)


def original_yaml(name: str) -> Path:
    """YOLOv5's own ``models/<name>.yaml`` (the original format, with ``anchors:``)."""
    return code().root / "models" / f"{name}.yaml"


def yolov5_model(name: str, seed: int = 0, nc: int | None = None) -> torch.nn.Module:
    """A model built by YOLOv5's own ``DetectionModel`` from its own YAML, without attnyolo, from seed ``seed``."""
    torch.manual_seed(seed)
    return code().yolo.DetectionModel(str(original_yaml(name)), nc=nc)


def save_like_train_py(model: torch.nn.Module, path: Path) -> Path:
    """Save ``model`` as YOLOv5's train.py saves ``last.pt`` (EMA, optimizer state, opt), then finalise it with
    YOLOv5's own ``strip_optimizer``, as every released ``yolov5s.pt`` was."""
    c = code()
    optimizer = c.module("utils.torch_utils").smart_optimizer(model, "SGD", 0.01, 0.937, 5e-4)
    ckpt = {
        "epoch": 0,
        "best_fitness": None,
        "model": copy.deepcopy(model).half(),
        "ema": copy.deepcopy(model).half(),
        "updates": 1,
        "optimizer": optimizer.state_dict(),
        "opt": {"imgsz": 640, "epochs": 1, "cfg": "yolov5n.yaml", "hyp": {"lr0": 0.01}},
        "date": datetime.now().isoformat(),
    }
    torch.save(ckpt, path)
    allow_file(path)  # as the host does before YOLOv5 loads a file: vet it, then let torch's weights_only load it
    c.module("utils.general").strip_optimizer(path)  # YOLOv5's own finalisation: reloads, strips, saves half
    return path
