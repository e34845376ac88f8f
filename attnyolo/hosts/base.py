"""The host interface: what the grid runner, transfer and registration need from a detection codebase.

Two implementations: :class:`attnyolo.hosts.ultralytics.UltralyticsHost` (Ultralytics 8, today's default) and
:class:`attnyolo.hosts.yolov5.host.YOLOv5Host` (the original YOLOv5 v7.0); :func:`attnyolo.hosts.select.host_for`
picks one by the model YAML's format. The grid runner (``attnyolo.experiments.runner``) does not use it yet:
wiring it there is the next step, after the runner's start path settles.

Metrics from :meth:`Host.val` use one set of keys on both hosts, :data:`METRIC_KEYS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import nn

METRIC_KEYS = ("precision", "recall", "mAP50", "mAP50-95")
"""Keys of :meth:`Host.val`'s result on every host (box metrics over all classes)."""

PathLike = str | os.PathLike


@runtime_checkable
class Host(Protocol):
    """A detection codebase attnyolo builds, loads, trains, validates and exports with."""

    name: str
    """``"ultralytics"`` or ``"yolov5"``: the report names the host."""

    def builds(self, cfg: Mapping) -> bool:
        """True when this host builds model YAML dict ``cfg`` (its format)."""

    def build(self, cfg: Any, nc: int | None = None, scale: str | None = None) -> nn.Module:
        """The model of a (possibly edited) model YAML, zoo registered, with fresh weights."""

    def load_checkpoint(self, path: PathLike, *, trust: bool = False) -> dict:
        """A checkpoint of this host, loaded without running code from it (unless ``trust``)."""

    def save_checkpoint(self, model: nn.Module, path: PathLike, meta: Mapping[str, Any] | None = None) -> Path:
        """Write ``model`` in the checkpoint format this host's own trainer loads as start weights."""

    def train(self, *, weights: PathLike, data: PathLike, project: PathLike, name: str, **options: Any) -> Path:
        """Train from start checkpoint ``weights`` with the host's own trainer; returns the run folder (which holds
        ``weights/best.pt``)."""

    def val(self, *, weights: PathLike, data: PathLike, **options: Any) -> dict[str, float]:
        """Validate ``weights``; returns :data:`METRIC_KEYS`."""

    def export(self, *, weights: PathLike, format: str = "onnx", **options: Any) -> Path:
        """Export ``weights`` with the host's own exporter; returns the file written."""
