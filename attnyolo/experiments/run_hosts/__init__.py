"""The grid runner's hosts (:class:`attnyolo.hosts.base.GridHost`): :mod:`.ultralytics` (Ultralytics 8, the default)
and :mod:`.yolov5` (the original YOLOv5 v7.0, an optional install), chosen by the grid's ``host`` key.

They live beside the runner rather than in :mod:`attnyolo.hosts` because they use the experiments' own modules (the
per-image validation statistics, the run callbacks); :mod:`attnyolo.hosts` stays below the experiments.
"""

from __future__ import annotations

import os

from attnyolo.experiments.run_hosts.ultralytics import UltralyticsGridHost
from attnyolo.experiments.run_hosts.yolov5 import YOLOv5GridHost
from attnyolo.hosts.base import GridHost

HOSTS = ("ultralytics", "yolov5")
DEFAULT_HOST = "ultralytics"


def grid_host(name: str = DEFAULT_HOST, yolov5: str | os.PathLike | None = None) -> GridHost:
    """The grid host called ``name`` (one of :data:`HOSTS`; validated by the grid); ``yolov5``: a v7.0 clone folder
    for the yolov5 host (default ``$ATTNYOLO_YOLOV5``, else the installed package)."""
    if name == "yolov5":
        return YOLOv5GridHost(yolov5)
    if name == DEFAULT_HOST:
        return UltralyticsGridHost()
    raise ValueError(f"host must be one of {', '.join(HOSTS)}, got {name!r}")
