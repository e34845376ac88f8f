"""Builders for the fine-tuning tests: a base detector with non-zero metrics, trained once per test session."""

from __future__ import annotations

from pathlib import Path

import torch
from filelock import FileLock

# Enough training for YOLOv8n from scratch to find some blood cells (mAP50 > 0 on the embedded val split), so
# "the identity start's metrics equal the base's" compares real numbers, not zeros: one epoch at any size the
# suite can afford leaves every metric at 0. Deterministic (Ultralytics' seed=0, deterministic=True).
BASE_RECIPE = dict(
    epochs=6,
    imgsz=96,
    batch=8,
    optimizer="AdamW",
    lr0=0.005,
    warmup_epochs=0,
    seed=0,
    workers=0,
    device="cpu",
    plots=False,
    val=False,
    verbose=False,
)
VAL_ARGS = dict(imgsz=96, batch=16, workers=0, device="cpu", plots=False, verbose=False)

# Fine-tuning runs in the tests: a few images, one optimiser step per batch (nbs=batch), no warm-up (whose first
# step has learning rate 0), so that two epochs really move the weights.
TINY_RUN = dict(
    imgsz=64,
    fraction=0.05,
    batch=4,
    nbs=4,
    warmup_epochs=0,
    optimizer="AdamW",
    lr0=0.01,
    workers=0,
    device="cpu",
    plots=False,
    val=False,
    verbose=False,
    exist_ok=True,
)


def shared_base(data: Path, root: Path) -> Path:
    """``best.pt`` of the base run in ``root`` (shared by the xdist workers), trained by whoever gets there first."""
    best = root / "finetune-base" / "train" / "weights" / "best.pt"
    with FileLock(str(root / "finetune-base.lock")):
        if not best.exists():
            from ultralytics import YOLO

            YOLO("yolov8n.yaml").train(data=str(data), project=str(root / "finetune-base"), name="train",
                                       exist_ok=True, **BASE_RECIPE)  # fmt: skip
    return best


def save_ultralytics(model: torch.nn.Module, path: Path) -> Path:
    """A checkpoint ``YOLO(path)`` loads (Ultralytics' own format: the model under ``model``)."""
    torch.save({"model": model.eval(), "train_args": {}}, path)
    return path


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
