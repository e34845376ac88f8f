"""Writing a model as an Ultralytics checkpoint: the ``.pt`` that ``YOLO(path)`` and ``yolo train model=`` load."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnyolo.atomic import write_atomically


def save_ultralytics_checkpoint(
    model: nn.Module, path: str | os.PathLike, meta: Mapping[str, Any] | None = None, *, data: Any = None
) -> Path:
    """Write ``model`` (in eval mode) as an Ultralytics checkpoint, atomically, with the umask's mode.

    Args:
        model: the detection model to store under ``model``.
        path: the destination ``.pt``.
        meta: attnyolo's record of where the model came from, stored under ``attnyolo``.
        data: the data YAML the model is meant for, recorded in ``train_args`` (what ``YOLO(path).train()`` reuses).
    """
    from ultralytics import __version__ as ultralytics_version

    train_args = {"task": "detect", "data": str(data)} if data is not None else {}
    ckpt = {
        "model": model.eval(),
        "train_args": train_args,
        "date": datetime.now(UTC).isoformat(),
        "version": ultralytics_version,
        "attnyolo": dict(meta or {}),
    }
    return write_atomically(path, lambda tmp: torch.save(ckpt, tmp))
