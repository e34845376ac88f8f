"""The insertion engine: pure edits of model YAML dicts, channel inference, and building with Ultralytics.

Data flows one way: YAML (path, bare Ultralytics name, or dict) -> :func:`insert` (a new dict and an
:class:`IndexMap`) -> :func:`build` (the task's Ultralytics model, zoo registered through
:func:`register`).

Two layers, imported only downwards (``tests/test_import_graph.py`` checks it):

- YAML (reads and writes dicts, builds no module): :mod:`.errors`, :mod:`.layers` (rows, references, attention
  row names), :mod:`.yaml_io` (load/dump), :mod:`.edit` (renumbering), :mod:`.inside_syntax` (the
  ``{inside: ...}`` option), :mod:`.channels` (channels per scale, as a table), :mod:`.inside` (which blocks
  take an attention inside, and the edits), :mod:`.placement` (where), :mod:`.align` (base and edited layers),
  :mod:`.names` (what a YAML may name: checked before Ultralytics builds it).
- torch (creates or runs modules): :mod:`.adapter` (``AttentionLayer``, the ``ay_<name>`` classes),
  :mod:`.hints` and :mod:`.checks` (probing), :mod:`.inside_modules` (attention inside bottlenecks),
  :mod:`.ultralytics` (the parse_model hook, registration and build), and :mod:`.api` (``insert``, ``remove``,
  ``replace``: YAML edits checked by probing).
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
