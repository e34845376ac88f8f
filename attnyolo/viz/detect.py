"""Detections for the pictures: the model's boxes after NMS, in original-image pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attnyolo.viz.images import Prepared


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) xyxy in original-image pixels
    scores: np.ndarray  # (N,)
    classes: np.ndarray  # (N,) int
    names: dict[int, str]


def detect(model: nn.Module, prepared: Prepared, conf: float = 0.25, iou: float = 0.45) -> Detections:
    """Run ``model`` on one prepared image and keep the boxes Ultralytics' NMS keeps."""
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    model.eval()
    with torch.no_grad():
        pred = model(prepared.tensor)
    pred = pred[0] if isinstance(pred, list | tuple) else pred
    det = non_max_suppression(pred, conf_thres=conf, iou_thres=iou)[0]
    boxes = det[:, :4].clone()
    if len(boxes):
        boxes = scale_boxes(prepared.tensor.shape[2:], boxes, prepared.original.shape[:2], prepared.ratio_pad)
    names = getattr(model, "names", None) or {}
    return Detections(boxes.numpy(), det[:, 4].numpy(), det[:, 5].int().numpy(), dict(names))
