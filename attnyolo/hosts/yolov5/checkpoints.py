"""Writing a model in YOLOv5's checkpoint format: what its ``train.py --weights``, ``val.py`` and ``export.py`` load.

The format is the dict YOLOv5's ``train.py`` saves and its ``strip_optimizer`` leaves in a released ``yolov5s.pt``:
``{'model': DetectionModel, 'ema': None, 'updates': None, 'optimizer': None, 'best_fitness': None, 'epoch': -1,
'opt': None, 'date': ...}``. The model is stored in its own dtype (YOLOv5 saves ``half()``; every loader of its
calls ``.float()``, and halving would only round the new layers' initial weights).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnyolo.atomic import write_atomically


def yolov5_checkpoint(model: nn.Module, meta: Mapping[str, Any] | None = None) -> dict:
    """The checkpoint dict of ``model`` (in eval mode) as YOLOv5's ``strip_optimizer`` leaves it."""
    return {
        "epoch": -1,
        "best_fitness": None,
        "model": model.eval(),
        "ema": None,
        "updates": None,
        "optimizer": None,
        "opt": None,
        "date": datetime.now(UTC).isoformat(),
        "attnyolo": dict(meta or {}),
    }


def save_yolov5_checkpoint(model: nn.Module, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as a YOLOv5 checkpoint, atomically; ``meta`` (attnyolo's record) goes under ``attnyolo``."""
    ckpt = yolov5_checkpoint(model, meta)
    return write_atomically(path, lambda tmp: torch.save(ckpt, tmp))
