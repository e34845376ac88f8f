"""Ultralytics 8 as a :class:`~attnyolo.hosts.base.Host`: a thin layer over what attnyolo already does with it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from attnyolo.checkpoints import load_checkpoint, save_ultralytics_checkpoint
from attnyolo.graph.layers import is_yolov5_original
from attnyolo.graph.ultralytics import build, register
from attnyolo.hosts.base import PathLike


class UltralyticsHost:
    """Ultralytics 8: ``DetectionModel`` & co., its checkpoint format, ``YOLO(...).train/val/export``."""

    name = "ultralytics"

    def builds(self, cfg: Mapping) -> bool:
        return not is_yolov5_original(cfg)

    def build(self, cfg: Any, nc: int | None = None, scale: str | None = None) -> nn.Module:
        return build(cfg, nc=nc, scale=scale)

    def load_checkpoint(self, path: PathLike, *, trust: bool = False) -> dict:
        return load_checkpoint(path, trust=trust)

    def save_checkpoint(self, model: nn.Module, path: PathLike, meta: Mapping[str, Any] | None = None) -> Path:
        return save_ultralytics_checkpoint(model, path, meta)

    def _yolo(self, weights: PathLike) -> Any:
        from ultralytics import YOLO  # Ultralytics' top-level API: imported when a run starts, as the CLI does

        register()
        return YOLO(str(weights))

    def train(self, *, weights: PathLike, data: PathLike, project: PathLike, name: str, **options: Any) -> Path:
        yolo = self._yolo(weights)
        yolo.train(data=str(data), project=str(project), name=name, **options)
        return Path(yolo.trainer.save_dir)

    def val(self, *, weights: PathLike, data: PathLike, **options: Any) -> dict[str, float]:
        box = self._yolo(weights).val(data=str(data), **options).box
        return {"precision": box.mp, "recall": box.mr, "mAP50": box.map50, "mAP50-95": box.map}

    def export(self, *, weights: PathLike, format: str = "onnx", **options: Any) -> Path:
        return Path(self._yolo(weights).export(format=format, **options))
