"""The original YOLOv5 v7.0 as a :class:`~attnyolo.hosts.base.Host` (the entry points of :mod:`.entry`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from attnyolo.checkpoints import load_checkpoint
from attnyolo.graph.layers import is_yolov5_original
from attnyolo.hosts.base import PathLike
from attnyolo.hosts.yolov5 import entry
from attnyolo.hosts.yolov5.checkpoints import save_yolov5_checkpoint
from attnyolo.hosts.yolov5.layers import build, register


class YOLOv5Host:
    """YOLOv5 v7.0 (the package, or the clone at ``yolov5``): its ``Model``, checkpoint format, train/val/export."""

    name = "yolov5"

    def __init__(self, yolov5: str | os.PathLike | None = None) -> None:
        self.yolov5 = yolov5

    def builds(self, cfg: Mapping) -> bool:
        return is_yolov5_original(cfg)

    def build(self, cfg: Any, nc: int | None = None, scale: str | None = None) -> nn.Module:
        return build(cfg, nc=nc, scale=scale, yolov5=self.yolov5)

    def load_checkpoint(self, path: PathLike, *, trust: bool = False) -> dict:
        register(self.yolov5)  # its classes resolve through the YOLOv5 in use
        return load_checkpoint(path, trust=trust)

    def save_checkpoint(self, model: nn.Module, path: PathLike, meta: Mapping[str, Any] | None = None) -> Path:
        return save_yolov5_checkpoint(model, path, meta)

    def train(self, *, weights: PathLike, data: PathLike, project: PathLike, name: str, **options: Any) -> Path:
        return entry.train(weights=weights, data=data, yolov5=self.yolov5, project=str(project), name=name, **options)

    def val(self, *, weights: PathLike, data: PathLike, **options: Any) -> dict[str, float]:
        mp, mr, map50, map_ = entry.val(weights=weights, data=data, yolov5=self.yolov5, **options)[0][:4]
        return {"precision": float(mp), "recall": float(mr), "mAP50": float(map50), "mAP50-95": float(map_)}

    def export(self, *, weights: PathLike, format: str = "onnx", **options: Any) -> Path:
        files = entry.export(weights=weights, include=(format,), yolov5=self.yolov5, **options)
        return Path(next(f for f in files if f))
