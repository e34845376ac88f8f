"""Attention inside blocks: a zoo module in every residual bottleneck of C2f, C3, C3k2 and their kin, as data.

The community's ``C3SE``, ``C3CBAM``, ``C2f_EMA``, ``C3_GC``... are each a copy of a block class with one line
added. Here the block row stays the block, and one option dict in front of its args says what goes inside::

    - [-1, 3, C2f, [128, True]]                                  # base
    - [-1, 3, C2f, [{inside: cbam}, 128, True]]                  # CBAM inside each of its bottlenecks
    - [-1, 3, C2f, [{inside: se, rd_ratio: 0.25}, 128, True]]    # with hyper-parameters
    - [-1, 3, C2f, [{inside: se, identity_start: false}, 128, True]]

Keys besides ``inside`` (the zoo name) and ``identity_start`` (adapter option, default true) are the zoo
module's hyper-parameters. The option goes first, not last, so that Ultralytics without attnyolo's hook fails
loudly on such a row (it reads the output width from ``args[0]``) instead of silently taking the dict for a
later positional argument (C2f's ``shortcut``, C3k2's ``attn``) and building another block.

The row count never changes, so nothing is renumbered and base layer ``i`` stays layer ``i``.

This module is the YAML side: which blocks take an attention inside, at what width, and the edits. The option dict
is read by :mod:`attnyolo.graph.inside_syntax`; each option is probed at every scale by
:func:`attnyolo.graph.checks.check_inside_rows`. :mod:`attnyolo.graph.inside_modules` turns the option into
modules when Ultralytics builds the row (through attnyolo's parse_model hook): each bottleneck gets ``attn`` (an
:class:`~attnyolo.graph.adapter.AttentionLayer`, so identity start, gate capture and gamma logging are those of
inserted layers) on its residual branch, after its last convolution and before the shortcut add (SE-ResNet's and
CBAM's position, and C3_GC's): ``y = x + attn(cv2(cv1(x)))``.

The attention's width is the bottleneck's, the block's hidden width (``c = c2 * e`` of C2f, ``c_`` of C3),
not the row's output width; :data:`RULES` computes it from the YAML at any scale, like
:mod:`attnyolo.graph.channels` does for layer outputs.

==============  ==========================================  ====================================
block           bottlenecks (count per row)                 width
==============  ==========================================  ====================================
Bottleneck      n (a Sequential when n > 1)                 ``c2`` (its output)
GhostBottleneck n (a Sequential when n > 1)                 ``c2`` (its output)
C2f, C2         n ``Bottleneck``                            ``int(c2 * e)``
C3, C3x         n ``Bottleneck``                            ``int(c2 * e)``
BottleneckCSP   n ``Bottleneck``                            ``int(c2 * e)``
C3Ghost         n ``GhostBottleneck``                       ``int(c2 * e)``
C2fCIB          n ``CIB``                                   ``int(c2 * e)``
C3k2            n ``Bottleneck`` (also with ``attn=True``)  ``c = int(c2 * e)``
C3k2 (c3k)      2n ``Bottleneck`` inside n ``C3k``          ``int(c * 0.5)`` (C3k's own ``c_``)
A2C2f (a2=0)    2n ``Bottleneck`` inside n ``C3k``          ``int(int(c2 * e) * 0.5)``
RepNCSPELAN4    2 ``RepCSP`` x ``n`` ``RepBottleneck``      ``int(c4 * 0.5)`` (times the row's repeats)
==============  ==========================================  ====================================

``C3k`` itself is not a YAML row in Ultralytics 8.4 (parse_model does not know it); its bottlenecks are
reached through C3k2 and A2C2f. Refused, with the reason: see :data:`REFUSED`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from attnyolo.graph.channels import SCALED, Context, layer_channels, resolve_scale
from attnyolo.graph.errors import HyperparameterError, PlacementError
from attnyolo.graph.inside_syntax import OPTION, make_option, option_of, plain, split_option, strip
from attnyolo.graph.layers import SECTIONS, Layer, is_yolov5_original, layers
from attnyolo.registry import ModuleSpec, describe


class Bottlenecks(NamedTuple):
    """The residual bottlenecks of one block row at one scale: how many, and their width (channels)."""

    count: int
    width: int


def _tail(layer: Layer, ctx: Context, k: int, default: Any) -> Any:
    """The block constructor's argument after ``c1, c2, n`` number ``k`` (YAML ``args[k + 1]``), as parse_model
    hands it over (strings naming its locals evaluated)."""
    args = layer.args
    return ctx.value(args[k + 1]) if len(args) > k + 1 else default


def _repeats(layer: Layer, ctx: Context) -> int:
    n = ctx.value(layer.repeats)
    return max(round(n * ctx.scale.depth), 1) if n > 1 else n  # parse_model's depth gain


def _csp(e_at: int) -> Callable[[Layer, Context], Bottlenecks | str]:
    """Blocks with ``n`` bottlenecks of width ``int(c2 * e)``, ``e`` the ``e_at``-th argument after ``n``."""

    def rule(layer: Layer, ctx: Context) -> Bottlenecks:
        return Bottlenecks(_repeats(layer, ctx), int(SCALED.channels(layer, ctx) * _tail(layer, ctx, e_at, 0.5)))

    return rule


def _c3k2(layer: Layer, ctx: Context) -> Bottlenecks:
    # C3k2(c1, c2, n, c3k=False, e=0.5, attn=False, g, shortcut); parse_model forces c3k at scales m, l, x
    c = int(SCALED.channels(layer, ctx) * _tail(layer, ctx, 1, 0.5))
    n = _repeats(layer, ctx)
    c3k = _tail(layer, ctx, 0, False) or ctx.scale.name in {"m", "l", "x"}
    if _tail(layer, ctx, 2, False):  # attn: Sequential(Bottleneck(c, c), PSABlock)
        return Bottlenecks(n, c)
    return Bottlenecks(2 * n, int(c * 0.5)) if c3k else Bottlenecks(n, c)


def _a2c2f(layer: Layer, ctx: Context) -> Bottlenecks | str:
    # A2C2f(c1, c2, n, a2=True, area, residual, mlp_ratio, e=0.5, g, shortcut): C3k repeats only when a2 is off
    if _tail(layer, ctx, 0, True):
        return "with a2=True its repeats are area-attention blocks (ABlock), not bottlenecks"
    c_ = int(SCALED.channels(layer, ctx) * _tail(layer, ctx, 4, 0.5))
    return Bottlenecks(2 * _repeats(layer, ctx), int(c_ * 0.5))


def _elan(layer: Layer, ctx: Context) -> Bottlenecks:
    # RepNCSPELAN4(c1, c2, c3, c4, n=1): two RepCSP(., c4, n), each n RepBottleneck(c4/2); c3, c4 are not scaled.
    # It takes no repeats argument, so a row's repeats build that many blocks in a Sequential.
    per_block = 2 * int(_tail(layer, ctx, 2, 1))
    return Bottlenecks(_repeats(layer, ctx) * per_block, int(int(_tail(layer, ctx, 1, 0)) * 0.5))


def _rows_of_bottlenecks(layer: Layer, ctx: Context) -> Bottlenecks:
    # a Bottleneck row (YOLOv3): no repeats argument, so n of them in a Sequential, each with its residual
    return Bottlenecks(_repeats(layer, ctx), SCALED.channels(layer, ctx))


RULES: dict[str, Callable[[Layer, Context], Bottlenecks | str]] = {
    "Bottleneck": _rows_of_bottlenecks,
    "GhostBottleneck": _rows_of_bottlenecks,
    "C2f": _csp(2),  # C2f(c1, c2, n, shortcut, g, e)
    "C2": _csp(2),
    "C3": _csp(2),
    "C3x": _csp(2),
    "BottleneckCSP": _csp(2),
    "C3Ghost": _csp(2),
    "C2fCIB": _csp(3),  # C2fCIB(c1, c2, n, shortcut, lk, g, e)
    "C3k2": _c3k2,
    "A2C2f": _a2c2f,
    "RepNCSPELAN4": _elan,
}
"""Block types with residual bottlenecks -> their bottleneck count and width at a scale (or why not)."""

REFUSED: dict[str, str] = {
    "C1": "its repeats are plain 3x3 convolutions with one residual around all of them, not bottlenecks",
    "C3TR": "its repeats are transformer layers, not bottlenecks",
    "RepC3": "its repeats are RepConv layers without a residual each, not bottlenecks",
    "C2PSA": "its repeats are PSA attention blocks, not bottlenecks",
    "C2fPSA": "its repeats are PSA attention blocks, not bottlenecks",
    "C2fAttn": "YOLO-World's text-guided block; not covered yet",
    "ELAN1": "its branches are plain convolutions, not bottlenecks",
}
"""Block types that have repeats but no residual bottleneck to put an attention in, and why."""

SUPPORTED = tuple(RULES)


def supported_text() -> str:
    """``"C2f, C2, C3, ..."``: the block types that take an attention inside, for error messages."""
    return ", ".join(SUPPORTED)


# ------------------------------------------------------------------------------------------------ placement


def _refusal(layer: Layer) -> str:
    why = REFUSED.get(layer.module, "it has no residual bottlenecks")
    return (
        f"layer {layer.index} ({layer.module}) cannot take an attention inside: {why}; "
        f"attention inside works in {supported_text()}"
    )


def bottlenecks(cfg: Mapping, i: int, scale: str | None = None, ch_in: int = 3) -> Bottlenecks:
    """Count and width of the residual bottlenecks of layer ``i`` at ``scale``; :class:`PlacementError` if none."""
    all_layers = layers(cfg)
    layer = plain(all_layers[i])
    rule = RULES.get(layer.module)
    if rule is None or is_yolov5_original(cfg):
        if is_yolov5_original(cfg):
            raise PlacementError(
                f"layer {i} ({layer.module}): attention inside blocks needs an Ultralytics YAML (yolov5nu.yaml...), "
                "not the original YOLOv5 format"
            )
        raise PlacementError(_refusal(layer))
    outputs = [x.c_out for x in layer_channels(cfg, scale, ch_in)[:i]]
    found = rule(layer, Context(cfg, resolve_scale(cfg, scale), outputs, ch_in))
    if isinstance(found, str):
        raise PlacementError(f"layer {i} ({layer.module}) cannot take an attention inside: {found}")
    return found


def refuse_temporal(spec: ModuleSpec, where: str) -> None:
    """Temporal modules mix the frames of a clip batch; a detector's batch holds unrelated images."""
    if spec.needs_frames:
        raise HyperparameterError(
            f"{where}: {spec.name!r} is a temporal module (it mixes the frames of a clip batch (B*T, C, H, W)); "
            "inside a block it would mix unrelated images; use a per-image module (attnyolo list)"
        )


# ---------------------------------------------------------------------------------------------------- edits


def _set_args(cfg: dict, i: int, args: list) -> None:
    n_backbone = len(cfg["backbone"])
    section, j = (SECTIONS[0], i) if i < n_backbone else (SECTIONS[1], i - n_backbone)
    row = cfg[section][j]
    cfg[section][j] = [row[0], row[1], row[2], args]


def add(cfg: Mapping, indices: Iterable[int], name: str, hparams: Mapping, identity_start: bool) -> dict:
    """A copy of ``cfg`` with ``{inside: name, **hparams}`` on the rows ``indices`` (each must be a block with
    bottlenecks and no attention inside yet)."""
    refuse_temporal(describe(name), "inside blocks")
    out = copy.deepcopy(dict(cfg))
    all_layers = layers(out)
    for i in indices:
        layer = all_layers[i]
        bottlenecks(out, i, None)  # refuses blocks without bottlenecks, naming the ones that work
        present = option_of(layer.args)
        if present is not None:
            raise PlacementError(
                f"layer {i} ({layer.module}) already has {present[OPTION]!r} inside; use attnyolo.replace() to swap it"
            )
        _set_args(out, i, [make_option(name, hparams, identity_start), *copy.deepcopy(layer.args)])
    return out


def blocks_in(cfg: Mapping, indices: Iterable[int], named: bool) -> list[int]:
    """The indices that are blocks with bottlenecks. With ``named`` (a region such as ``"neck"``), other layers are
    left out and only an empty result is an error; explicit indices must all be such blocks."""
    all_layers = layers(cfg)
    indices = list(indices)
    chosen = []
    for i in indices:
        try:
            bottlenecks(cfg, i, None)
        except PlacementError:
            if not named:
                raise
            continue
        chosen.append(i)
    if not chosen:
        found = ", ".join(f"{i} ({all_layers[i].module})" for i in indices)
        raise PlacementError(
            f"no layer of this placement has residual bottlenecks (layers {found}); "
            f"attention inside works in {supported_text()}"
        )
    return chosen


def remove(cfg: Mapping, indices: Iterable[int]) -> dict:
    """A copy of ``cfg`` without the inside options of rows ``indices``."""
    out = copy.deepcopy(dict(cfg))
    all_layers = layers(out)
    for i in indices:
        _set_args(out, i, strip(all_layers[i].args))
    return out


def swap(cfg: Mapping, indices: Iterable[int], name: str, hparams: Mapping) -> dict:
    """A copy of ``cfg`` whose rows ``indices`` hold ``name`` inside instead (adapter options kept)."""
    out = copy.deepcopy(dict(cfg))
    all_layers = layers(out)
    for i in indices:
        _, _, options = split_option(option_of(all_layers[i].args))
        new = make_option(name, hparams, options.get("identity_start", True))
        _set_args(out, i, [new, *strip(all_layers[i].args)])
    return out
