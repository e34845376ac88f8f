"""The syntax of attention inside blocks: the option dict in front of a block row's args (``{inside: cbam}``).

``- [-1, 3, C2f, [{inside: se, rd_ratio: 0.25}, 128, True]]``: key ``inside`` names the zoo module, ``identity_start``
is an adapter option, the other keys are the module's hyper-parameters. Only the dict is read here; which blocks
take it, at what width, and the edits that write it are :mod:`attnyolo.graph.inside`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from attnyolo.graph.errors import ModelYAMLError
from attnyolo.graph.layers import SECTIONS, Layer, layers

OPTION = "inside"
"""Key of the leading args dict that puts an attention inside a block's bottlenecks."""

ADAPTER_OPTIONS = frozenset({"identity_start"})
"""Keys of the option dict that are adapter options (the rest are the zoo module's hyper-parameters)."""


def option_of(args: Any) -> dict | None:
    """The inside option of a row's args (its leading ``{inside: ...}`` dict), or ``None``."""
    if isinstance(args, list) and args and isinstance(args[0], Mapping) and OPTION in args[0]:
        return dict(args[0])
    return None


def strip(args: list) -> list:
    """``args`` without the inside option: what Ultralytics' parse_model gets."""
    return list(args[1:]) if option_of(args) is not None else list(args)


def plain(layer: Layer) -> Layer:
    """``layer`` with its inside option stripped (the row parse_model builds), for rules that read ``args``."""
    return replace(layer, args=strip(layer.args)) if option_of(layer.args) is not None else layer


def split_option(option: Mapping) -> tuple[str, dict, dict]:
    """``(zoo name, hparams, adapter options)`` of an inside option dict."""
    name = option.get(OPTION)
    if not isinstance(name, str) or not name:
        raise ModelYAMLError(f"{{{OPTION}: ...}} takes a zoo name like cbam, got {name!r}")
    rest = {k: v for k, v in option.items() if k != OPTION}
    options = {k: v for k, v in rest.items() if k in ADAPTER_OPTIONS}
    hparams = {k: v for k, v in rest.items() if k not in ADAPTER_OPTIONS}
    return name, hparams, options


def make_option(name: str, hparams: Mapping | None = None, identity_start: bool = True) -> dict:
    """The option dict written into a block row: ``{inside: name, **hparams}`` (+ ``identity_start: false``)."""
    out = {OPTION: name, **dict(hparams or {})}
    if not identity_start:
        out["identity_start"] = False
    return out


def inside_rows(cfg: Mapping) -> list[int]:
    """Indices of the rows of ``cfg`` that carry an attention inside."""
    return [x.index for x in layers(cfg) if option_of(x.args) is not None]


def inside_name(cfg: Mapping, i: int) -> str | None:
    """The zoo name inside layer ``i`` (``None`` when it has none)."""
    option = option_of(layers(cfg)[i].args)
    return None if option is None else option.get(OPTION)


def without_inside(d: Mapping) -> tuple[Mapping, dict[int, dict]]:
    """For the parse_model hook: ``d`` with its inside options stripped (``d`` itself when it has none), and the
    plan ``{layer index: option}`` to apply to the built layers."""
    plan = {}
    i = 0
    for section in SECTIONS:
        for row in d.get(section) or []:
            if isinstance(row, (list, tuple)) and len(row) == 4 and option_of(row[3]) is not None:
                plan[i] = option_of(row[3])
            i += 1
    if not plan:
        return d, plan
    out = dict(d)
    for section in SECTIONS:
        out[section] = [
            [r[0], r[1], r[2], strip(r[3])] if isinstance(r, (list, tuple)) and len(r) == 4 else r
            for r in d.get(section) or []
        ]
    return out, plan
