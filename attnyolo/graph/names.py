"""Which names a model YAML may use, checked before Ultralytics' ``parse_model`` sees them.

``parse_model`` (``ultralytics/nn/tasks.py``) turns a YAML's text into calls: it ``eval()``s the ``activation``
string, looks each row's module up with ``getattr(torch.nn, ...)``, ``getattr(torchvision.ops, ...)`` or
``globals()[name]`` in its own module (whose globals also hold functions such as ``torch_safe_load`` and whole
model classes that load further YAML files), and replaces a string argument by one of its local variables or a
Python literal. A model YAML read from a file (a downloaded YAML, a checkpoint's ``model.yaml``, the metadata
of a ``.safetensors``) is therefore code. :func:`check_buildable` admits only what Ultralytics' own YAMLs use:

- ``activation``: ``nn.<Layer>(literal arguments)`` or ``torch.nn.<Layer>(...)``, an ``nn.Module`` class of
  ``torch.nn``;
- modules (:func:`layer_class`): ``nn.<Layer>`` and ``torchvision.ops.<Layer>`` that are ``nn.Module``
  classes, Ultralytics layers (classes defined in ``ultralytics.nn.modules``; not model classes, losses or
  functions), attnyolo's ``ay_<name>`` adapters of zoo entries, and other layer classes attnyolo registers in
  ``ultralytics.nn.tasks``;
- string arguments: a Python literal (``'None'``) or a plain identifier (``nearest``, ``nc``), never an
  expression;
- ``ay_<name>`` rows: ``[]``, ``[{hparams}]`` or ``[{hparams}, {options}]`` with hyper-parameters the zoo
  module takes (their values reach only the module's constructor, which checks them).

The checks are explicit ``raise`` statements (never ``assert``, which ``python -O`` removes).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping
from typing import Any

import torchvision
from torch import nn
from ultralytics.nn import tasks

from attnyolo.graph.errors import BuildError
from attnyolo.graph.layers import ROW_PREFIX, check_model, class_name, layers, row_hparams
from attnyolo.registry import available, describe

# Where layers that parse_model may find in its globals are defined: every layer named by Ultralytics' own YAMLs,
# and the adapters attnyolo registers there (``ay_<name>``, and any other adapter of the engine).
_LAYER_PACKAGES = ("ultralytics.nn.modules.", "attnyolo.")


def _module_class(obj: Any) -> type[nn.Module] | None:
    return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None


def _tasks_layer(name: str) -> type[nn.Module] | None:
    cls = _module_class(vars(tasks).get(name))
    return cls if cls is not None and cls.__module__.startswith(_LAYER_PACKAGES) else None


def layer_class(name: Any) -> type[nn.Module]:
    """The layer class a YAML row's module name other than ``ay_<zoo name>`` stands for, as ``parse_model`` would
    find it (attention rows: :func:`attnyolo.graph.ultralytics.resolve_layer` gives their adapter class).

    Args:
        name: ``"Conv"``, ``"nn.Upsample"`` or ``"torchvision.ops.<Layer>"``.

    Returns:
        The ``nn.Module`` class.

    Raises:
        BuildError: a name that is not such a layer (with the closest known names).
    """
    if not isinstance(name, str):
        raise BuildError(f"module {name!r} is not a name (a string such as 'Conv' or 'nn.Upsample')")
    if name.startswith("nn."):
        cls = _module_class(getattr(nn, name[3:], None)) if name[3:].isidentifier() else None
    elif name.startswith("torchvision.ops."):
        cls = _module_class(getattr(torchvision.ops, name[16:], None)) if name[16:].isidentifier() else None
    else:
        cls = _tasks_layer(name) if name.isidentifier() else None
    if cls is None:
        raise BuildError(f"module {name!r} is neither an Ultralytics, torch nor attnyolo layer{_closest(name)}")
    return cls


def _closest(name: str) -> str:
    known = [k for k in vars(tasks) if _tasks_layer(k) is not None]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    close += difflib.get_close_matches(ROW_PREFIX + name.lower(), [class_name(a) for a in available()], n=2, cutoff=0.8)
    return f"; did you mean {', '.join(close)}?" if close else ""


def check_activation(act: Any) -> None:
    """Accept only ``[torch.]nn.<Layer>(literal arguments)``: ``parse_model`` ``eval()``s the string.

    Raises:
        BuildError: naming the refused value.
    """
    refused = BuildError(f"activation {act!r} is not of the form nn.<Layer>(literal arguments), e.g. nn.SiLU()")
    if not isinstance(act, str):
        raise refused
    try:
        call = ast.parse(act.strip(), mode="eval").body
    except SyntaxError:
        raise refused from None
    if not isinstance(call, ast.Call):
        raise refused
    node, parts = call.func, []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise refused
    parts.append(node.id)
    if parts[1:] not in (["nn"], ["nn", "torch"]) or _module_class(getattr(nn, parts[0], None)) is None:
        raise refused
    for arg in [*call.args, *call.keywords]:
        value = arg.value if isinstance(arg, ast.keyword) else arg
        if isinstance(arg, ast.keyword) and arg.arg is None:  # **kwargs: not a literal argument list
            raise refused
        try:
            ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise refused from None


def check_string_arg(value: str, where: str) -> None:
    """A row's string argument must be a Python literal or a plain name: ``parse_model`` looks it up or evaluates
    it as a literal; anything else (an expression) is not what any Ultralytics YAML holds.

    Raises:
        BuildError: naming the row and the refused value.
    """
    if value.isidentifier() and not value.startswith("__"):
        return
    try:
        ast.literal_eval(value)
        return
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    raise BuildError(f"{where}: argument {value!r} is neither a literal nor a name (expressions are refused)")


def check_buildable(cfg: Mapping) -> None:
    """Refuse a model YAML whose names ``parse_model`` would turn into anything but layer construction.

    Checks the ``activation``, every row's module (a zoo name for ``ay_<name>`` rows, else :func:`layer_class`),
    every string argument and the hyper-parameter names of attention rows.

    Raises:
        BuildError: naming the layer and the refused value.
        HyperparameterError: an attention row with a hyper-parameter its module does not take.
        UnknownModuleError: an ``ay_<name>`` row whose name is not in the zoo.
        ModelYAMLError: not a model YAML (rows that are not ``[from, repeats, module, args]``...).
    """
    check_model(cfg)
    if cfg.get("activation") is not None:
        check_activation(cfg["activation"])
    for layer in layers(cfg):
        where = f"layer {layer.index}"
        try:
            if layer.attention is not None:
                class_name(describe(layer.attention).name)  # as adapter_class(): a zoo name that makes a class name
            else:
                layer_class(layer.module)
        except BuildError as e:
            raise BuildError(f"{where}: {e}") from None
        if layer.attention is not None:
            hparams, _ = row_hparams(layer.module, layer.args, f"{where}: ")
            describe(layer.attention).check_hparams(hparams)
            continue
        for arg in layer.args:
            if isinstance(arg, str):
                check_string_arg(arg, f"{where} ({layer.module})")
