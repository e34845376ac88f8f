"""The original YOLOv5 (v7.0) as a host: its own ``Model``, checkpoint format and ``train.py``/``val.py``/``export.py``.

Nothing here is imported by ``import attnyolo``: YOLOv5 is an optional extra (``attnyolo[yolov5]``, README "The
original YOLOv5"). :func:`register` (called by :func:`build` and the ``attnyolo yolov5`` commands) registers the zoo
in YOLOv5's ``models.yolo``. Layout: :mod:`.source` (the package or a clone, imported offline), :mod:`.layers`
(registration, build), :mod:`.safety` (the allow-list of YOLOv5's classes), :mod:`.checkpoints` (YOLOv5's checkpoint
format), :mod:`.entry` (train, val, export through YOLOv5's own entry points), :mod:`.errors`.
"""

from attnyolo.hosts.yolov5.checkpoints import save_yolov5_checkpoint
from attnyolo.hosts.yolov5.errors import SUPPORTED, YOLOv5HostError
from attnyolo.hosts.yolov5.layers import build, register
from attnyolo.hosts.yolov5.safety import is_yolov5_model, resolve_class
from attnyolo.hosts.yolov5.source import ENV_VAR, YOLOv5Code, locate

__all__ = [
    "ENV_VAR",
    "SUPPORTED",
    "YOLOv5Code",
    "YOLOv5HostError",
    "build",
    "is_yolov5_model",
    "locate",
    "register",
    "resolve_class",
    "save_yolov5_checkpoint",
]
