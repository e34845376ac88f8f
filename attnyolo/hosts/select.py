"""Choosing a host by the model YAML's format (not imported by ``import attnyolo``: the hosts' train entry points
import the fine-tuning layer, which imports the package)."""

from __future__ import annotations

from typing import Any

from attnyolo.graph.layers import is_yolov5_original
from attnyolo.graph.yaml_io import load
from attnyolo.hosts.base import Host
from attnyolo.hosts.ultralytics import UltralyticsHost
from attnyolo.hosts.yolov5.host import YOLOv5Host


def host_for(cfg: Any) -> Host:
    """The host that builds model YAML ``cfg`` (a path or dict): YOLOv5 for the original format, else Ultralytics."""
    return YOLOv5Host() if is_yolov5_original(load(cfg)) else UltralyticsHost()
