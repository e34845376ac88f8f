"""Builders for the weight tests: tiny models, a hand-edited YOLOv8n YAML, checkpoints that attack the loader."""

from __future__ import annotations

import copy
import os
import pathlib
import shutil
from pathlib import Path

import torch
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

BASE_HEAD_AFTER_INSERT = [  # yolov8n's head with one row inserted after layer 10 (the first neck layer), by hand
    [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],  # 10
    None,  # 11: the inserted row
    [[-1, 6], 1, "Concat", [1]],  # 12 (was 11)
    [-1, 3, "C2f", [512]],  # 13 (was 12)
    [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],  # 14 (was 13)
    [[-1, 4], 1, "Concat", [1]],  # 15 (was 14)
    [-1, 3, "C2f", [256]],  # 16 (was 15)
    [-1, 1, "Conv", [256, 3, 2]],  # 17 (was 16)
    [[-1, 13], 1, "Concat", [1]],  # 18 (was 17; its input 12 is now 13)
    [-1, 3, "C2f", [512]],  # 19 (was 18)
    [-1, 1, "Conv", [512, 3, 2]],  # 20 (was 19)
    [[-1, 9], 1, "Concat", [1]],  # 21 (was 20; 9 is before the insert point)
    [-1, 3, "C2f", [1024]],  # 22 (was 21)
    [[16, 19, 22], 1, "Detect", ["nc"]],  # 23 (was 22; inputs 15, 18, 21 shifted)
]
INSERT_AFTER_10 = {old: old if old <= 10 else old + 1 for old in range(23)}
"""The insertion's index map: layers 0-10 keep their index, every later one moves up by one."""


def yolov8n_cfg() -> dict:
    return yaml_model_load("yolov8n.yaml")


def edited_cfg(row: list) -> dict:
    """yolov8n's YAML with ``row`` inserted after layer 10, written out by hand above (no engine involved)."""
    cfg = yolov8n_cfg()
    cfg["head"] = copy.deepcopy([row if r is None else r for r in BASE_HEAD_AFTER_INSERT])
    return cfg


def build(cfg: dict, nc: int = 3, seed: int = 0) -> DetectionModel:
    """A model whose every tensor (BatchNorm statistics included) differs from a fresh build's."""
    torch.manual_seed(seed)
    model = DetectionModel(copy.deepcopy(cfg), nc=nc, verbose=False)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():  # small positive changes: running_var stays positive, activations tame
                t.mul_(0.95 + 0.1 * torch.rand_like(t)).add_(1e-3 * torch.rand_like(t))
    return model.eval()


def train_tiny(data: Path, project: Path) -> tuple[Path, Path]:
    """Train YOLOv8n for one epoch on 5% of the embedded dataset at 64 px (seconds on a CPU).

    Returns the final ``best.pt`` (stripped: ``model`` in fp16, no EMA/optimizer) and a copy of ``last.pt`` as
    saved during training (``ema``, optimizer state, ``IterableSimpleNamespace`` args).
    """
    from ultralytics import YOLO

    mid = project / "mid_training_last.pt"
    model = YOLO("yolov8n.yaml")
    model.add_callback("on_model_save", lambda trainer: shutil.copyfile(trainer.last, mid))
    model.train(
        data=str(data),
        epochs=1,
        imgsz=64,
        fraction=0.05,
        workers=0,
        device="cpu",
        project=str(project),
        name="train",
        plots=False,
        val=False,
        verbose=False,
    )
    return project / "train" / "weights" / "best.pt", mid


class CallsFunction:
    """Unpickles as ``func(*args)``: the classic pickle payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """Payloads that would each create ``marker`` if unpickled, with the global the error must name."""
    return {
        "os.system": (CallsFunction(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "builtins.exec": (CallsFunction(exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
        "Path.write_text": (CallsFunction(pathlib.Path.write_text, marker, "pwned"), "builtins.getattr"),
    }
