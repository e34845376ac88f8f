"""Plugging the zoo into Ultralytics: name resolution, one documented hook, and model building.

How Ultralytics finds a module: ``ultralytics.nn.tasks.parse_model`` reads each YAML row ``[from, n, module,
args]`` and looks the module name up with ``globals()[module]`` in ``ultralytics.nn.tasks``. :func:`register`
therefore sets one adapter class per zoo entry as an attribute of that module, named ``ay_<name>``
(``ay_cbam``), a prefix no Ultralytics or torch class uses (Ultralytics has its own ``CBAM``, ``PSA``,
``Attention``...).

The one hook, and why: for a module it does not know, parse_model passes the row's ``args`` unchanged, so an
attention cannot learn its input channels from ``args`` alone; the YAML would have to carry a channel count
per scale, which is the bug this package removes. parse_model does evaluate a string argument that names
one of its local variables (``args[j] = locals()[a]``: that is how ``nc`` becomes the class count). So
:func:`register` replaces ``ultralytics.nn.tasks.parse_model`` with a thin wrapper that, for attnyolo rows
only, prepends the strings ``"ch"`` and ``"f"`` to a copy of the row's args and calls the original; the
adapter receives Ultralytics' own channel list and the row's ``from`` and reads ``c1 = ch[f]``. Nothing of
parse_model is copied, no Ultralytics file is edited, the model's ``yaml`` keeps the clean rows, and
``DetectionModel`` & co. pick the wrapper up because they look ``parse_model`` up at call time.

The adapter itself (:class:`~attnyolo.graph.adapter.AttentionLayer`, its identity start, its row format) is
:mod:`attnyolo.graph.adapter`; this module is the Ultralytics side: the hook, registration, and building.

Checkpoints: :func:`register` adds the adapters and the zoo's classes to torch's safe globals, so loading with
``ULTRALYTICS_SAFE_LOAD=1`` (``weights_only=True``) accepts them like Ultralytics' own layers. Checkpoints written
before the adapter had its own module (main up to e2efe6e) name ``attnyolo.graph.ultralytics.ay_<name>``: this
module's ``__getattr__`` resolves those names to the adapter classes, and :func:`register` allows them under that
name for ``weights_only`` loading.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from typing import Any

import torch
import ultralytics.nn.tasks as tasks
from torch import nn

from attnyolo.graph import adapter
from attnyolo.graph.adapter import AttentionLayer, adapter_class, adapter_classes
from attnyolo.graph.channels import resolve_scale
from attnyolo.graph.checks import check_attention_rows
from attnyolo.graph.errors import BuildError
from attnyolo.graph.inside_modules import CLASSES as INSIDE_CLASSES
from attnyolo.graph.inside_modules import patch_model
from attnyolo.graph.inside_syntax import without_inside
from attnyolo.graph.layers import ROW_PREFIX, attention_name, is_yolov5_original, layers
from attnyolo.graph.names import check_buildable, layer_class
from attnyolo.graph.yaml_io import load
from attnyolo.registry import available

_SYMBOLS = ("ch", "f")  # parse_model locals handed to attnyolo rows: channel list so far, the row's from
_HOOK_MARK = "__attnyolo_hook__"
_SAFE: set = set()  # entries already given to torch.serialization.add_safe_globals


def __getattr__(name: str) -> Any:
    # A checkpoint pickled before the adapter moved to attnyolo.graph.adapter names ay_<name> here.
    if name.startswith(ROW_PREFIX):
        return getattr(adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_layer(name: Any) -> type[nn.Module]:
    """The layer class a YAML row's module name stands for, as ``parse_model`` would find it.

    Args:
        name: ``"Conv"``, ``"nn.Upsample"``, ``"torchvision.ops.<Layer>"`` or ``"ay_<zoo name>"``.

    Returns:
        The ``nn.Module`` class (for ``ay_<name>``, the adapter class).

    Raises:
        BuildError: a name that is not such a layer (with the closest known names); an unknown zoo name raises
            the registry's ``UnknownModuleError``.
    """
    attention = attention_name(name)
    return adapter_class(attention) if attention is not None else layer_class(name)


def _with_channel_symbols(d: Mapping) -> dict:
    """A copy of model dict ``d`` whose attnyolo rows get ``"ch", "f"`` prepended to their args."""
    out = dict(d)
    for section in ("backbone", "head"):
        rows = []
        for row in d.get(section) or []:
            attention = attention_name(row[2]) if isinstance(row, (list, tuple)) and len(row) == 4 else None
            if attention is not None:
                cls = adapter_class(attention)
                setattr(tasks, row[2], cls)  # a name registered after register() still resolves
                row = [row[0], row[1], row[2], [*_SYMBOLS, *copy.deepcopy(row[3])]]
            rows.append(row)
        out[section] = rows
    return out


def _wrap(original):
    def parse_model(d, ch, verbose=True):
        """attnyolo's hook around Ultralytics' parse_model: hands attnyolo rows their input channels
        (see :mod:`attnyolo.graph.ultralytics`), then calls the original unchanged; block rows with an
        attention inside (:mod:`attnyolo.graph.inside`) are built plain, then patched."""
        d, plan = without_inside(d)
        net, save = original(_with_channel_symbols(d), ch, verbose)
        if plan:
            patch_model(net, plan)
        return net, save

    parse_model.__wrapped__ = original
    setattr(parse_model, _HOOK_MARK, True)
    return parse_model


def _zoo_classes() -> list[type]:
    # every nn.Module class the zoo defines (modules' parts included), for torch's weights_only allow-list
    out = []
    for name, module in list(sys.modules.items()):
        if name == "attnyolo.attention" or name.startswith("attnyolo.attention."):
            out += [
                v
                for v in vars(module).values()
                if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == name
            ]
    return out


def _moved_zoo_classes() -> list[tuple[type, str]]:
    # zoo classes re-exported by another zoo file than their own (SoftmaxGate moved from self_attention to
    # _attention): a checkpoint pickled before the move names them by the old path, which weights_only must accept
    out = []
    for name, module in list(sys.modules.items()):
        if name == "attnyolo.attention" or name.startswith("attnyolo.attention."):
            for attr, v in vars(module).items():
                if (
                    isinstance(v, type)
                    and issubclass(v, nn.Module)
                    and v.__module__ != name
                    and v.__module__.startswith("attnyolo.attention.")
                ):
                    out.append((v, f"{name}.{attr}"))
    return out


def _old_adapter_names(adapters: list[type]) -> list[tuple[type, str]]:
    # the adapters under the name that checkpoints pickled before the adapter had its own module use
    return [(cls, f"{__name__}.{cls.__name__}") for cls in adapters]


def register() -> None:
    """Make every zoo entry buildable by Ultralytics (idempotent; ``import attnyolo`` may call it).

    Sets ``ultralytics.nn.tasks.ay_<name>`` for each zoo name, installs the parse_model hook once, and adds
    the adapter and zoo classes to torch's safe globals for ``weights_only`` checkpoint loading.
    """
    for attention in available():
        cls = adapter_class(attention)
        setattr(tasks, cls.__name__, cls)
    if not getattr(tasks.parse_model, _HOOK_MARK, False):
        tasks.parse_model = _wrap(tasks.parse_model)
    if hasattr(torch.serialization, "add_safe_globals"):
        adapters = [AttentionLayer, *adapter_classes()]
        new = [
            c
            for c in (*adapters, *_old_adapter_names(adapters), *_zoo_classes(), *_moved_zoo_classes(), *INSIDE_CLASSES)
            if c not in _SAFE
        ]
        _SAFE.update(new)
        torch.serialization.add_safe_globals(new)


def is_registered() -> bool:
    """True once :func:`register` has installed the parse_model hook in this process."""
    return "ultralytics.nn.tasks" in sys.modules and bool(getattr(tasks.parse_model, _HOOK_MARK, False))


# The model class for a YAML: a few heads need their own class (as YOLO() picks them), else the task's.
HEAD_MODEL_CLASS = {
    "RTDETRDecoder": "RTDETRDetectionModel",
    "WorldDetect": "WorldModel",
    "YOLOEDetect": "YOLOEModel",
    "YOLOESegment": "YOLOESegModel",
    "YOLOESegment26": "YOLOESegModel",
}
TASK_MODEL_CLASS = {
    "detect": "DetectionModel",
    "segment": "SegmentationModel",
    "pose": "PoseModel",
    "obb": "OBBModel",
    "classify": "ClassificationModel",
    "semantic": "SemanticSegmentationModel",
    "depth": "DepthModel",
}


def model_class(cfg: Mapping) -> type[nn.Module]:
    """The Ultralytics model class that builds ``cfg`` (DetectionModel, SegmentationModel, ...)."""
    head = layers(cfg)[-1].module
    name = HEAD_MODEL_CLASS.get(head) or TASK_MODEL_CLASS.get(tasks.guess_model_task(dict(cfg)) or "detect")
    return getattr(tasks, name)


def build(cfg: Any, nc: int | None = None, scale: str | None = None, verbose: bool = False, ch: int = 3) -> nn.Module:
    """Build the task's Ultralytics model (``DetectionModel``, ``SegmentationModel``...) from a model YAML.

    Args:
        cfg: a path, a bare Ultralytics name or a dict (an edited one from :func:`attnyolo.insert`).
        nc: number of classes (overrides the YAML's ``nc``).
        scale: ``"n"``, ``"s"``... (default: the YAML's ``scale``, else its first scale).
        verbose: print Ultralytics' layer table.
        ch: input channels.

    Raises:
        GraphError: a YAML that is not a model, names what is not a layer, or an activation or argument that is
            an expression (:func:`attnyolo.graph.names.check_buildable`); ``nc`` that is not an integer >= 1.
    """
    d = load(cfg, scale=scale)
    classes = nc if nc is not None else d.get("nc")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        where = "nc" if nc is not None else "the YAML's nc"
        raise BuildError(f"{where} (number of classes) must be an integer >= 1, got {classes!r}")
    if is_yolov5_original(d):
        raise BuildError(
            "this is the original YOLOv5 format (anchors:, Detect [nc, anchors]): Ultralytics builds only its YOLOv5u "
            "YAMLs (yolov5nu.yaml...); attnyolo.build (attnyolo.hosts.build) builds it with YOLOv5's own Model"
        )
    register()
    check_buildable(d)
    sc = resolve_scale(d, scale)
    if sc.name:
        d["scale"] = sc.name  # explicit, so parse_model does not warn and guess
    check_attention_rows(d, scales=[sc.name or None], ch_in=ch)
    return model_class(d)(d, ch=ch, nc=nc, verbose=verbose)
