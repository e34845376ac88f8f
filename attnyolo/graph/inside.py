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
:mod:`attnyolo.graph.inside_modules` turns the option into modules when Ultralytics builds the row
(through attnyolo's parse_model hook): each bottleneck gets ``attn`` (an :class:`AttentionLayer`, so identity
start, gate capture and gamma logging are those of inserted layers) on its residual branch, after its last
convolution and before the shortcut add (SE-ResNet's and CBAM's position, and C3_GC's):
``y = x + attn(cv2(cv1(x)))``.

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
from dataclasses import replace
from typing import Any, NamedTuple

from attnyolo.graph.channels import SCALED, Context, layer_channels, resolve_scale, scale_names
from attnyolo.graph.checks import probe
from attnyolo.graph.errors import HyperparameterError, ModelYAMLError, PlacementError
from attnyolo.graph.layers import SECTIONS, Layer, is_yolov5_original, layers
from attnyolo.registry import ModuleSpec, describe

OPTION = "inside"
"""Key of the leading args dict that puts an attention inside a block's bottlenecks."""

ADAPTER_OPTIONS = frozenset({"identity_start"})
"""Keys of the option dict that are adapter options (the rest are the zoo module's hyper-parameters)."""


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


# ------------------------------------------------------------------------------------------------ row options


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


def _set_args(cfg: dict, i: int, args: list) -> None:
    n_backbone = len(cfg["backbone"])
    section, j = (SECTIONS[0], i) if i < n_backbone else (SECTIONS[1], i - n_backbone)
    row = cfg[section][j]
    cfg[section][j] = [row[0], row[1], row[2], args]


# ---------------------------------------------------------------------------------------------------- checks


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


def check_inside_rows(cfg: Mapping, scales: Iterable[str | None] | None = None, ch_in: int = 3) -> None:
    """Check every inside option of ``cfg`` at each of ``scales`` (default: every scale the YAML defines): a block
    type with bottlenecks, a known non-temporal zoo module with valid hyper-parameters, and a module that builds
    and keeps the shape at the bottleneck width of every scale (errors name the layer and the scale)."""
    rows = inside_rows(cfg)
    if not rows:
        return
    all_layers = layers(cfg)
    parsed = {}
    for i in rows:
        name, hparams, _ = split_option(option_of(all_layers[i].args))
        spec = describe(name)
        refuse_temporal(spec, f"layer {i} ({all_layers[i].module})")
        spec.check_hparams(hparams)
        parsed[i] = (spec, hparams)
    for scale in list(scales) if scales is not None else (scale_names(cfg) or [None]):
        for i in rows:
            spec, hparams = parsed[i]
            found = bottlenecks(cfg, i, scale, ch_in)
            at = f"layer {i} ({all_layers[i].module} inside" + (f", scale {scale}" if scale else "") + ")"
            probe(spec, found.width, hparams, at)


def inner_params(cfg: Mapping, i: int, scale: str | None = None) -> int:
    """Parameters the inside option of layer ``i`` adds at ``scale``: count x (module + its gamma, if any).

    The gamma is counted as the adapter decides it (:class:`attnyolo.graph.ultralytics.AttentionLayer`), so this
    is exact; it builds one adapter, at the bottleneck width.
    """
    from attnyolo.graph.ultralytics import adapter_class

    name, hparams, options = split_option(option_of(layers(cfg)[i].args))
    found = bottlenecks(cfg, i, scale)
    one = adapter_class(name)([found.width], 0, hparams, options)
    return found.count * sum(p.numel() for p in one.parameters())


# ----------------------------------------------------------------------------------------------------- edits


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
