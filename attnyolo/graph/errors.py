"""The insertion engine's errors: each says, in one line, which input is wrong and what would be right.

Every class derives from :class:`GraphError` (attnyolo's ``AttnYoloError``, a ``ValueError``), so a caller
(the CLI) catches one type and prints its message; nothing here should surface as a traceback from deep
inside Ultralytics. An unknown attention name or hyper-parameter raises the registry's
:class:`attnyolo.registry.UnknownModuleError` (it lists the closest names) or
:class:`attnyolo.registry.HyperparameterError` (the one check, shared by ``create`` and the engine); they are
re-exported here so ``except (GraphError, UnknownModuleError, HyperparameterError)`` covers the engine.
"""

from __future__ import annotations

from attnyolo.errors import AttnYoloError
from attnyolo.registry import HyperparameterError, UnknownModuleError


class GraphError(AttnYoloError):
    """Base class of the insertion engine's errors (a ``ValueError``); the message is one line."""


class ModelYAMLError(GraphError):
    """The input is not a model YAML: missing file, not YAML, no backbone/head, malformed rows or ``from``."""


class ModelYAMLNotFoundError(ModelYAMLError, FileNotFoundError):
    """A path or bare Ultralytics model name that does not resolve to a file."""


class PlacementError(GraphError):
    """A placement that is out of range, names an unknown region or type, or matches no layer."""


class ScaleError(GraphError):
    """A scale the YAML does not define (or any scale for a YAML without ``scales``)."""


class ShapeError(GraphError):
    """An attention that cannot sit at that place: wrong channel count for its constraints, a layer whose output
    is not one feature map, or a module whose output shape differs from its input."""


class BuildError(GraphError):
    """A YAML the engine can edit but Ultralytics cannot build (original YOLOv5 format, unknown module name)."""


__all__ = [
    "BuildError",
    "GraphError",
    "HyperparameterError",
    "ModelYAMLError",
    "ModelYAMLNotFoundError",
    "PlacementError",
    "ScaleError",
    "ShapeError",
    "UnknownModuleError",
]
