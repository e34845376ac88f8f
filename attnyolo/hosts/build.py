"""``attnyolo.build``: one entry for both hosts, chosen by the YAML's format.

An original-format YOLOv5 YAML (``anchors:``) goes to YOLOv5's own ``Model`` (:func:`attnyolo.hosts.yolov5.build`,
which needs the optional YOLOv5 install), anything else to Ultralytics (:func:`attnyolo.graph.ultralytics.build`).
It lives here, above both, so that the Ultralytics layer (``attnyolo.graph``) never imports a host.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from attnyolo.graph.layers import is_yolov5_original
from attnyolo.graph.ultralytics import build as build_ultralytics
from attnyolo.graph.yaml_io import load
from attnyolo.hosts.yolov5 import build as build_yolov5


def build(cfg: Any, nc: int | None = None, scale: str | None = None, verbose: bool = False, ch: int = 3) -> nn.Module:
    """Build a model YAML with the host its format belongs to (see :func:`attnyolo.graph.ultralytics.build` for the
    arguments; ``scale`` of an original YOLOv5 YAML is n/s/m/l/x, its depth and width multiples)."""
    d = load(cfg)
    if is_yolov5_original(d):
        return build_yolov5(cfg, nc=nc, scale=scale, verbose=verbose, ch=ch)
    return build_ultralytics(cfg, nc=nc, scale=scale, verbose=verbose, ch=ch)
