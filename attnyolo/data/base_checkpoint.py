"""The base checkpoint shipped in the package: YOLOv8n trained from scratch on the embedded BCCD data.

Made by ``scripts/train_base.py`` (recipe, seed and epochs in its docstring), stored as fp16 safetensors with its
architecture YAML in the metadata, and loaded through :func:`attnyolo.checkpoints.load_safetensors_model` (no
pickle). It is the start of ``attnyolo demo``'s fine-tunes: a detector that already works on the embedded data, so
the demo compares attention variants added to a working model, as users do.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from torch import nn

BASE_PATH = Path(__file__).with_name("base_yolov8n_bccd.safetensors")
"""The shipped base checkpoint."""

RECORDED = {"map50": 0.6885, "map50_95": 0.4112}
"""Val-split mAP of the shipped base (imgsz 320, batch 16, CPU), as ``scripts/train_base.py`` printed it."""

VAL_ARGS = {"imgsz": 320, "batch": 16, "rect": True, "device": "cpu", "split": "val", "plots": False, "verbose": False}
"""How the recorded mAP was measured (as ``YOLO.val`` does it: rectangular batches)."""


def base_path() -> Path:
    """Path of the shipped base checkpoint (raises a clear error when the package was built without it)."""
    from attnyolo.checkpoints import CheckpointError

    if not BASE_PATH.is_file():
        raise CheckpointError(
            f"{BASE_PATH}: the shipped base checkpoint is missing from this installation; rebuild it with "
            "`python scripts/train_base.py`"
        )
    return BASE_PATH


def load_base() -> nn.Module:
    """The shipped base as an fp32 Ultralytics ``DetectionModel`` in eval mode, loaded without pickle."""
    from attnyolo.checkpoints import load_safetensors_model

    return load_safetensors_model(base_path()).float()


def validate(model: nn.Module, data: str | Path | None = None, **overrides: Any) -> dict[str, float]:
    """Ultralytics' validation of an in-memory detection model on a data set's val split.

    Args:
        model: a ``DetectionModel`` (any dtype; validated in fp32 on the CPU by default).
        data: data YAML; default the embedded data set.
        **overrides: validator arguments replacing :data:`VAL_ARGS` (``imgsz``, ``batch``, ``device``...).

    Returns:
        ``map50``, ``map50_95``, ``precision``, ``recall`` on the split.
    """
    from ultralytics.models.yolo.detect import DetectionValidator

    from attnyolo.data import default_dataset

    with tempfile.TemporaryDirectory(prefix="attnyolo-val-") as tmp:
        args = {**VAL_ARGS, **overrides, "data": str(data or default_dataset()), "project": tmp, "name": "val"}
        validator = DetectionValidator(args=args)
        validator(model=model.float())
        box = validator.metrics.box
        return {
            "map50": float(box.map50),
            "map50_95": float(box.map),
            "precision": float(box.mp),
            "recall": float(box.mr),
        }


def validate_base(path: str | Path | None = None) -> dict[str, float]:
    """Load a base checkpoint (default: the shipped one) through the safe loader and validate it."""
    from attnyolo.checkpoints import load_safetensors_model

    return validate(load_safetensors_model(path or base_path()))
