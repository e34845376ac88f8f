"""Placements: which layers of a model YAML an attention follows, as data.

``where`` names a region (:data:`NAMED`) or lists base indices; ``after`` filters by module type. Both are
resolved against the input's numbering into a :class:`Placement` (sorted indices and a mode), before any
row moves, so one call can place several attentions without one placement shifting another.

=================  =============  =============================================================================
``where``          mode           layers
=================  =============  =============================================================================
``"neck"``         after          each layer the head reads (its inputs): the neck outputs feeding Detect
``"backbone"``     after          each backbone layer that a neck/head layer reads (the stage outputs the neck
                                  concatenates, and the last backbone layer)
``"before_head"``  before_head    the head inputs again, but each attention is read by the head only
``[12, 15]``       after          those layers (``"12,15"`` in the CLI)
``None``           after          ``"neck"``, or with ``after=TYPE`` every layer of that type
=================  =============  =============================================================================

With both ``where`` and ``after``, the placement is their intersection (``where="backbone", after="C2f"``).
Named regions keep only layers whose output is one feature map (never ``CBLinear``'s list of tensors);
explicit indices are checked later and refused with a :class:`ShapeError` instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from attnyolo.graph.channels import FEATURE, layer_channels
from attnyolo.graph.errors import PlacementError
from attnyolo.graph.layers import INPUT, Layer, layers

AFTER = "after"
BEFORE_HEAD = "before_head"

Where = str | int | Sequence[int] | None


class Placement(NamedTuple):
    """Resolved placement: ``mode`` (:data:`AFTER` or :data:`BEFORE_HEAD`) and sorted base indices."""

    mode: str
    indices: tuple[int, ...]


def _head_inputs(all_layers: list[Layer], n_backbone: int) -> list[int]:
    return [j for j in all_layers[-1].inputs if j != INPUT]


def _backbone_outputs(all_layers: list[Layer], n_backbone: int) -> list[int]:
    return sorted({j for x in all_layers[n_backbone:] for j in x.inputs if j != INPUT and j < n_backbone})


NAMED: dict[str, tuple[str, Callable[[list[Layer], int], list[int]]]] = {
    "neck": (AFTER, _head_inputs),
    "backbone": (AFTER, _backbone_outputs),
    "before_head": (BEFORE_HEAD, _head_inputs),
}
"""Named regions: mode and the function selecting their base indices."""


def _match_type(all_layers: list[Layer], type_name: str) -> set[int]:
    candidates = all_layers[:-1]
    present = sorted({x.module for x in candidates})

    def norm(s: str) -> str:
        return s.lower().removeprefix("nn.")

    wanted = norm(type_name)
    found = {x.index for x in candidates if norm(x.module) == wanted}
    if not found:
        close = difflib.get_close_matches(type_name, present, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PlacementError(f"no layer of type {type_name!r} in this YAML (it has {', '.join(present)}){hint}")
    return found


def _explicit(where: str | int | Sequence[int], last: int) -> list[int]:
    if isinstance(where, str):
        try:
            where = [int(x) for x in where.replace(" ", "").split(",") if x]
        except ValueError:
            raise PlacementError(
                f"unknown placement {where!r}: use {', '.join(NAMED)} or layer indices like [12, 15]"
            ) from None
    items = [where] if isinstance(where, int) else list(where)
    if not items:
        raise PlacementError("empty list of layer indices")
    for k in items:
        if isinstance(k, bool) or not isinstance(k, int):
            raise PlacementError(f"a layer index is an int, got {k!r}")
        if k == last:
            raise PlacementError(f"layer {k} is the head; to put attention on its inputs use where='before_head'")
        if not 0 <= k < last:
            raise PlacementError(
                f"layer index {k} is out of range: this YAML has layers 0..{last} ({last} is the head)"
            )
    return sorted(set(items))


def resolve(cfg: Mapping, where: Where = None, after: str | None = None) -> Placement:
    """Base indices (and mode) selected by ``where`` and ``after`` in ``cfg``; raises :class:`PlacementError`."""
    all_layers = layers(cfg)
    last, n_backbone = len(all_layers) - 1, len(cfg["backbone"])
    by_type = _match_type(all_layers, after) if after is not None else None
    if where is None and by_type is not None:
        mode, chosen = AFTER, sorted(by_type)
    else:
        where = "neck" if where is None else where
        key = where.lower().replace("-", "_") if isinstance(where, str) else None
        if key in NAMED:
            mode, select = NAMED[key]
            kinds = {x.index: x.kind for x in layer_channels(cfg, scale=_any_scale(cfg))}
            chosen = [k for k in select(all_layers, n_backbone) if kinds[k] == FEATURE and k != last]
        else:
            mode, chosen = AFTER, _explicit(where, last)
        if by_type is not None:
            chosen = [k for k in chosen if k in by_type]
    if not chosen:
        what = f"where={where!r}" + (f" and after={after!r}" if after is not None else "")
        raise PlacementError(f"placement {what} matches no layer of this YAML")
    return Placement(mode, tuple(sorted(set(chosen))))


def _any_scale(cfg: Mapping) -> str | None:
    # output kinds do not depend on the scale; any valid one will do
    scales = cfg.get("scales")
    return (cfg.get("scale") if cfg.get("scale") in (scales or {}) else next(iter(scales))) if scales else None
