"""The zoo inside YOLOv5's own ``Model``: registration in ``models.yolo`` and building an original-format YAML.

YOLOv5 v7.0's ``parse_model(d, ch)`` resolves a row's module with ``eval(m)`` in ``models.yolo``'s namespace and
evaluates every string argument the same way (inside the function, so its locals ``ch`` and ``f`` are visible);
a module it does not know gets ``c2 = ch[f]``, i.e. it is taken to keep its input's channels, which an attention
does. :func:`register` therefore sets the same adapters Ultralytics gets (``ay_<name>``,
:class:`attnyolo.graph.adapter.AttentionLayer`, with its identity start) as attributes of ``models.yolo``, and
wraps ``models.yolo.parse_model`` (``Model.__init__`` looks it up at call time) so that attnyolo rows get the
strings ``"ch", "f"`` prepended to a copy of their args: the adapter receives YOLOv5's channel list and reads
``ch[f]``, exactly as under Ultralytics. No YOLOv5 file is edited and the model's ``yaml`` keeps the clean rows.

The adapters pickle as ``attnyolo.graph.ultralytics.ay_<name>`` whichever host built them, so a trained YOLOv5
checkpoint loads wherever attnyolo is importable.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from attnyolo.graph.adapter import adapter_class
from attnyolo.graph.checks import check_attention_rows
from attnyolo.graph.errors import BuildError
from attnyolo.graph.inside_syntax import without_inside
from attnyolo.graph.layers import attention_name, is_yolov5_original
from attnyolo.graph.names import check_buildable
from attnyolo.graph.yaml_io import load
from attnyolo.hosts.yolov5.safety import allow_yolov5_classes
from attnyolo.hosts.yolov5.source import YOLOv5Code, locate
from attnyolo.registry import available

_SYMBOLS = ("ch", "f")  # parse_model locals handed to attnyolo rows: channel list so far, the row's from
_HOOK_MARK = "__attnyolo_hook__"

SCALES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}
"""depth_multiple, width_multiple of YOLOv5 v7.0's yolov5{n,s,m,l,x}.yaml (the five differ only in these)."""


def register(yolov5: str | os.PathLike | None = None) -> YOLOv5Code:
    """Make every zoo entry buildable by YOLOv5's ``Model`` (idempotent) and its classes loadable by ``torch.load``.

    Args:
        yolov5: a v7.0 clone folder; default ``$ATTNYOLO_YOLOV5``, else the installed ``yolov5`` package.

    Returns:
        The YOLOv5 that was registered.

    Raises:
        YOLOv5HostError: YOLOv5 missing, broken or of another version.
    """
    code = locate(yolov5)
    yolo = code.yolo
    for attention in available():
        cls = adapter_class(attention)
        setattr(yolo, cls.__name__, cls)
    if not getattr(yolo.parse_model, _HOOK_MARK, False):
        yolo.parse_model = _wrap(yolo.parse_model, yolo)
    allow_yolov5_classes(code)
    return code


def _with_channel_symbols(d: Mapping, yolo: Any) -> dict:
    """A copy of model dict ``d`` whose attnyolo rows get ``"ch", "f"`` prepended to their args."""
    out = dict(d)
    for section in ("backbone", "head"):
        rows = []
        for row in d.get(section) or []:
            attention = attention_name(row[2]) if isinstance(row, (list, tuple)) and len(row) == 4 else None
            if attention is not None:
                setattr(yolo, row[2], adapter_class(attention))  # a zoo name added after register() resolves too
                row = [row[0], row[1], row[2], [*_SYMBOLS, *copy.deepcopy(row[3])]]
            rows.append(row)
        out[section] = rows
    return out


def _wrap(original: Any, yolo: Any) -> Any:
    def parse_model(d, ch):
        """attnyolo's hook around YOLOv5's parse_model: hands attnyolo rows their input channels
        (see :mod:`attnyolo.hosts.yolov5.layers`), then calls the original unchanged."""
        _, plan = without_inside(d)
        if plan:
            raise BuildError(
                "attentions inside blocks (C3 bottlenecks) are built by the Ultralytics host only; on YOLOv5 insert "
                "attention rows between layers (--where neck/backbone/indices)"
            )
        return original(_with_channel_symbols(d, yolo), ch)

    parse_model.__wrapped__ = original
    setattr(parse_model, _HOOK_MARK, True)
    return parse_model


def scaled(cfg: Mapping, scale: str | None) -> dict:
    """``cfg`` with the depth and width multiples of ``scale`` (n/s/m/l/x); ``cfg`` as it is for ``None``."""
    d = dict(cfg)
    if scale is None:
        return d
    if scale not in SCALES:
        raise BuildError(f"scale {scale!r} is not a YOLOv5 scale; choose one of {', '.join(SCALES)}")
    d["depth_multiple"], d["width_multiple"] = SCALES[scale]
    return d


@contextlib.contextmanager
def _quiet(verbose: bool):
    # YOLOv5 logs its layer table at INFO through the "yolov5" logger; keep it for verbose builds only.
    logger = logging.getLogger("yolov5")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def build(
    cfg: Any,
    nc: int | None = None,
    scale: str | None = None,
    verbose: bool = False,
    ch: int = 3,
    yolov5: str | os.PathLike | None = None,
) -> nn.Module:
    """Build an original-format YOLOv5 YAML (``anchors:``, edited or not) with YOLOv5's own ``DetectionModel``.

    Args:
        cfg: a path or a dict (an edited one from :func:`attnyolo.insert`).
        nc: number of classes (overrides the YAML's ``nc``).
        scale: ``"n"``, ``"s"``, ``"m"``, ``"l"``, ``"x"``: use that scale's depth and width multiples; default the
            YAML's own.
        verbose: print YOLOv5's layer table.
        ch: input channels.
        yolov5: a v7.0 clone folder (default ``$ATTNYOLO_YOLOV5``, else the installed package).

    Raises:
        BuildError: an Ultralytics-8 YAML (build it with :func:`attnyolo.build`), a bad ``nc`` or scale.
        GraphError: a YAML that names what is not a layer or holds expressions (YOLOv5 would ``eval`` them).
        YOLOv5HostError: YOLOv5 missing, broken or of another version.
    """
    source = cfg if isinstance(cfg, (str, os.PathLike)) else "the model YAML"
    d = load(cfg)
    if not is_yolov5_original(d):
        raise BuildError(
            f"{source}: an Ultralytics-8 YAML (no anchors:), not the original YOLOv5 format; build it with "
            "attnyolo.build (the Ultralytics host), or give a YOLOv5 v7.0 YAML (its models/yolov5s.yaml)"
        )
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise BuildError(f"nc (number of classes) must be an integer >= 1, got {nc!r}")
    d = scaled(d, scale)
    check_buildable(d)
    check_attention_rows(d, scales=[None], ch_in=ch)
    code = register(yolov5)
    with _quiet(verbose):
        return code.yolo.DetectionModel(d, ch=ch, nc=nc)
