"""A model YAML seen as a list of layers: rows, ``from`` references, attention rows, the two dialects.

Both dialects share the row format ``[from, repeats, module, args]`` in two lists, ``backbone`` then ``head``;
layer ``i`` is row ``i`` of their concatenation and the last row is the head (Detect, Segment, ...).

- **Ultralytics** (``yolov8.yaml``, ``yolo11.yaml``, ``yolov5.yaml`` = YOLOv5u...): ``scales:`` or
  ``depth_multiple``/``width_multiple``; the head takes ``[nc]``.
- **original YOLOv5** (github.com/ultralytics/yolov5, the format most attention tutorials edit): an ``anchors:``
  key, ``depth_multiple``/``width_multiple``, and ``Detect`` with ``[nc, anchors]``.

``from`` is an int or a list of ints: ``-k`` means "k layers back", ``j >= 0`` means layer ``j``, and ``-1`` at
layer 0 means the input image. References live only in ``from`` (Concat and head inputs included), which is
why renumbering ``from`` is enough to keep every edge of the graph.

Attention rows written by attnyolo read ``[-1, 1, ay_<name>, [{hparams}]]``: the ``ay_`` prefix cannot collide
with an Ultralytics or torch module name, and the rest is the zoo name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attnyolo.graph.errors import BuildError, ModelYAMLError

ROW_PREFIX = "ay_"
"""Module names of attention rows: ``ay_`` + zoo name (``ay_cbam``)."""

METADATA_KEY = "attnyolo"
"""Top-level key where the engine records its edits (``base``, ``inserted``, ``index_map``)."""

SECTIONS = ("backbone", "head")

INPUT = -1
"""Target of layer 0's ``from: -1``: the input image, not a layer."""

From = int | list


@dataclass(frozen=True)
class Layer:
    """One row of a model YAML with its global index and section."""

    index: int
    section: str
    from_: From
    repeats: Any
    module: str
    args: list

    @property
    def inputs(self) -> list[int]:
        """Absolute indices this layer reads (``INPUT`` for the image), in ``from`` order."""
        return [absolute(f, self.index) for f in (self.from_ if isinstance(self.from_, list) else [self.from_])]

    @property
    def attention(self) -> str | None:
        """Zoo name if this is an attnyolo attention row, else ``None``."""
        return attention_name(self.module)


def attention_name(module: Any) -> str | None:
    """``"cbam"`` for ``"ay_cbam"``; ``None`` for any other module name."""
    if isinstance(module, str) and module.startswith(ROW_PREFIX) and len(module) > len(ROW_PREFIX):
        return module[len(ROW_PREFIX) :]
    return None


def row_module(attention: str) -> str:
    """The YAML module name of zoo entry ``attention``: ``"cbam"`` -> ``"ay_cbam"``."""
    return ROW_PREFIX + attention


def class_name(attention: str) -> str:
    """Python/YAML name of the adapter of zoo entry ``attention`` (``"cbam"`` -> ``"ay_cbam"``)."""
    name = ROW_PREFIX + re.sub(r"\W", "_", attention)
    if not name.isidentifier():
        raise BuildError(f"zoo name {attention!r} does not make a valid adapter name")
    return name


def row_hparams(module: str, args: Any, where: str = "") -> tuple[dict, dict]:
    """``(hparams, options)`` of an attention row's args: ``[]``, ``[{...}]`` or ``[{...}, {...}]``."""
    if not isinstance(args, list) or len(args) > 2 or not all(isinstance(a, dict) for a in args):
        raise ModelYAMLError(
            f"{where}{module} args must be [], [{{hparam: value}}] or [{{hparams}}, {{options}}], got {args!r}"
        )
    hparams = dict(args[0]) if args else {}
    options = dict(args[1]) if len(args) > 1 else {}
    return hparams, options


def absolute(f: int, i: int) -> int:
    """Absolute layer index of reference ``f`` seen from layer ``i`` (``INPUT`` for layer 0's ``-1``)."""
    return f if f >= 0 else (INPUT if i == 0 and f == -1 else i + f)


def is_yolov5_original(cfg: Mapping) -> bool:
    """True for the original YOLOv5 format (``anchors:`` key, ``Detect`` with ``[nc, anchors]``)."""
    return "anchors" in cfg


def layers(cfg: Mapping) -> list[Layer]:
    """Every row of ``backbone`` then ``head`` as :class:`Layer` (call :func:`check_model` first)."""
    out = []
    for section in SECTIONS:
        for row in cfg[section]:
            f, n, m, args = row
            out.append(Layer(len(out), section, f, n, m, args))
    return out


def head(cfg: Mapping) -> Layer:
    """The last layer: the task head (Detect, Segment, Pose, OBB, v10Detect, Classify, RTDETRDecoder...)."""
    return layers(cfg)[-1]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_model(cfg: Any, source: str = "model") -> None:
    """Raise :class:`ModelYAMLError` unless ``cfg`` is a model dict whose every ``from`` reads an earlier layer."""
    if not isinstance(cfg, Mapping):
        raise ModelYAMLError(f"{source} is not a model YAML: its top level is a {type(cfg).__name__}, not a mapping")
    missing = [s for s in SECTIONS if s not in cfg]
    if missing:
        raise ModelYAMLError(
            f"{source} is not a model YAML: no {' or '.join(map(repr, missing))} "
            "(a model YAML has 'backbone' and 'head' lists of [from, repeats, module, args] rows)"
        )
    i = 0
    for section in SECTIONS:
        rows = cfg[section]
        if not isinstance(rows, list):
            raise ModelYAMLError(f"{source}: {section!r} must be a list of [from, repeats, module, args] rows")
        for row in rows:
            where = f"{source}: layer {i} ({section})"
            if not isinstance(row, (list, tuple)) or len(row) != 4:
                raise ModelYAMLError(f"{where} must be [from, repeats, module, args], got {row!r}")
            f, n, m, args = row
            if not isinstance(m, str) or not m:
                raise ModelYAMLError(f"{where}: module must be a name like 'Conv', got {m!r}")
            if not _is_int(n) or n < 1:
                raise ModelYAMLError(f"{where} ({m}): repeats must be a positive integer, got {n!r}")
            if not isinstance(args, list):
                raise ModelYAMLError(f"{where} ({m}): args must be a list, got {args!r}")
            refs = f if isinstance(f, list) else [f]
            if not refs or not all(_is_int(x) for x in refs):
                raise ModelYAMLError(f"{where} ({m}): 'from' must be an int or a non-empty list of ints, got {f!r}")
            for x in refs:
                j = absolute(x, i)
                if j == INPUT and i == 0:
                    continue
                if not 0 <= j < i:
                    why = "a later layer or itself" if j >= i else "before the first layer"
                    raise ModelYAMLError(f"{where} ({m}): 'from' {x} points to {why}")
            i += 1
    if i < 2:
        raise ModelYAMLError(f"{source} is not a model YAML: it needs at least one layer and a head, has {i} row(s)")
