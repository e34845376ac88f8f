"""The YOLOv5 host's error: a missing or unusable YOLOv5 installation, a YAML or checkpoint of the other host."""

from __future__ import annotations

from attnyolo.errors import AttnYoloError

SUPPORTED = "YOLOv5 v7.0 (the PyPI package yolov5 7.0.x, or a clone of github.com/ultralytics/yolov5 at tag v7.0)"
INSTALL_HINT = (
    "install it with `pip install --no-deps yolov5==7.0.14` and `pip install 'attnyolo[yolov5]'` "
    "(README: The original YOLOv5), or point --yolov5 / ATTNYOLO_YOLOV5 at a v7.0 clone"
)


class YOLOv5HostError(AttnYoloError):
    """The YOLOv5 host cannot do what was asked; the message names the path or file and what to do."""
