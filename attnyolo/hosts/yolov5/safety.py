"""YOLOv5's own layer classes as an allow-list for ``weights_only`` loading.

A YOLOv5 checkpoint (``{'model': DetectionModel, 'ema': ..., 'opt': {...}, ...}``, written by its ``train.py``)
pickles its layers by module path: ``models.yolo.DetectionModel``, ``models.common.C3`` in checkpoints made by a
clone (the released ``yolov5s.pt`` too), ``yolov5.models.yolo.DetectionModel`` in those made by the PyPI package.
Both name the same code. :func:`resolve_class` maps such a name to the class of the YOLOv5 in use, only when it is an
``nn.Module`` subclass defined in that YOLOv5's ``models/common.py``, ``models/yolo.py`` or
``models/experimental.py`` (the files its checkpoints draw from); attnyolo's loader admits those classes as data,
as it does Ultralytics' (see :mod:`attnyolo.checkpoints`: no constructor call, no hooks).

:func:`allow_yolov5_classes` also registers them process-wide with ``torch.serialization.add_safe_globals``, so
YOLOv5's own ``torch.load(weights)`` (``weights_only=True`` by default since torch 2.6) loads a checkpoint that
attnyolo has vetted, instead of failing or needing the unsafe full pickle.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

from attnyolo.hosts.yolov5.source import PACKAGE, YOLOv5Code, locate

LAYER_MODULES = ("models.common", "models.yolo", "models.experimental")
"""The YOLOv5 files whose layer classes a checkpoint may name."""

PREFIXES = ("models.", "yolov5.models.")
"""Module-path prefixes of YOLOv5 layer classes in pickles (a clone's, the PyPI package's)."""

_registered: set[tuple[type, str]] = set()


def names_for(code: YOLOv5Code, module: str) -> list[str]:
    """The pickle module paths that name YOLOv5 file ``module`` (``models.yolo``) for ``code``."""
    return [module, "yolov5." + module] if code.kind == PACKAGE else [module]


def layer_classes(code: YOLOv5Code) -> dict[str, type]:
    """``{pickle name: class}`` of every ``nn.Module`` subclass defined in YOLOv5's layer files."""
    out: dict[str, type] = {}
    for module_name in LAYER_MODULES:
        module = code.module(module_name)
        for attr, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, nn.Module) and value.__module__ == module.__name__:
                for prefix in names_for(code, module_name):
                    out[f"{prefix}.{attr}"] = value
    return out


def resolve_class(name: str, yolov5: str | os.PathLike | None = None) -> type | None:
    """The YOLOv5 layer class a pickled global names (``models.common.C3``), or ``None`` when it names none."""
    if not name.startswith(PREFIXES):
        return None
    return layer_classes(locate(yolov5)).get(name)


def allow_yolov5_classes(code: YOLOv5Code) -> None:
    """Register YOLOv5's layer classes with torch's safe globals (idempotent)."""
    new = [(cls, name) for name, cls in layer_classes(code).items() if (cls, name) not in _registered]
    if new:
        _registered.update(new)
        torch.serialization.add_safe_globals(new)


def is_yolov5_model(model: object) -> bool:
    """True for a model built by YOLOv5's code (its ``DetectionModel`` & co.), whichever layout."""
    module = type(model).__module__
    return isinstance(model, nn.Module) and module in {"models.yolo", "yolov5.models.yolo"} and module in sys.modules
