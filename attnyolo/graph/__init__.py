"""The insertion engine: pure edits of model YAML dicts, channel inference, and building with Ultralytics.

Data flows one way: YAML (path, bare Ultralytics name, or dict) -> :func:`insert` (a new dict and an
:class:`IndexMap`) -> :func:`build` (the task's Ultralytics model, zoo registered through
:func:`register`). Submodules: :mod:`.layers` (rows and references), :mod:`.edit` (renumbering),
:mod:`.placement` (where), :mod:`.inside` and :mod:`.inside_modules` (attention inside blocks),
:mod:`.channels` (channels per scale, as a table), :mod:`.checks`, :mod:`.yaml_io` (load/dump),
:mod:`.names` (what a YAML may name: checked before Ultralytics builds it),
:mod:`.ultralytics` (registration and build), :mod:`.errors`.
"""

from attnyolo.graph.api import index_map, insert, remove, replace
from attnyolo.graph.channels import layer_channels, output_channels
from attnyolo.graph.edit import IndexMap
from attnyolo.graph.errors import (
    BuildError,
    GraphError,
    HyperparameterError,
    ModelYAMLError,
    ModelYAMLNotFoundError,
    PlacementError,
    ScaleError,
    ShapeError,
    UnknownModuleError,
)
from attnyolo.graph.ultralytics import build, register
from attnyolo.graph.yaml_io import dump, load

__all__ = [
    "BuildError",
    "GraphError",
    "HyperparameterError",
    "IndexMap",
    "ModelYAMLError",
    "ModelYAMLNotFoundError",
    "PlacementError",
    "ScaleError",
    "ShapeError",
    "UnknownModuleError",
    "build",
    "dump",
    "index_map",
    "insert",
    "layer_channels",
    "load",
    "output_channels",
    "register",
    "remove",
    "replace",
]
