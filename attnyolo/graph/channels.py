"""Output channels of every layer of a model YAML at any scale, without building the model.

Ultralytics' ``parse_model`` computes each layer's output channels ``c2`` in a long ``if m in {...}`` chain;
here the same knowledge is a table, :data:`ULTRALYTICS_RULES` (and :data:`YOLOV5_RULES` for the original
YOLOv5 format): module name -> :class:`Rule`. A module missing from the table keeps its input's channels,
which is exactly parse_model's ``else: c2 = ch[f]`` (``nn.Upsample``, ``nn.MaxPool2d``, attention rows...).
The test suite checks every rule against forward hooks on models that Ultralytics builds from every YAML it
ships, at scales n and s, so a drift between this table and an Ultralytics release shows up as a failure.

A layer's channels are an ``int`` for one feature map, a ``list`` of ints for a layer that outputs several
tensors (``CBLinear``), and its ``kind`` says whether an attention may follow it (:data:`FEATURE` only).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from attnyolo.graph.errors import ScaleError
from attnyolo.graph.inside_syntax import plain
from attnyolo.graph.layers import INPUT, Layer, is_yolov5_original, layers

Channels = int | list | None

FEATURE = "feature"  # one feature map (B, C, H, W): an attention may follow
FEATURES = "features"  # several tensors (CBLinear, TorchVision with split=True)
HEAD = "head"  # the task head
OTHER = "other"  # not a feature map (ImagePoolingAttn's text embeddings, unknown multi-input modules)


@dataclass(frozen=True)
class Scale:
    """One compound-scaling setting: ``scales[name] = [depth, width, max_channels]`` or the file's multiples."""

    name: str
    depth: float
    width: float
    max_channels: float


def scale_names(cfg: Mapping) -> list[str]:
    """Scales a YAML defines (``["n", "s", "m", "l", "x"]``), ``[]`` for a single-size YAML."""
    return list(cfg.get("scales") or {})


def resolve_scale(cfg: Mapping, scale: str | None = None) -> Scale:
    """The scale parse_model would use: ``scale``, else ``cfg["scale"]``, else the first of ``scales``."""
    scales = cfg.get("scales")
    if scales:
        name = scale or cfg.get("scale") or next(iter(scales))
        if name not in scales:
            raise ScaleError(f"unknown scale {name!r}; this YAML defines {', '.join(map(str, scales))}")
        depth, width, max_channels = scales[name]
        return Scale(str(name), depth, width, max_channels)
    if scale:
        raise ScaleError(f"scale {scale!r} requested but this YAML has no 'scales' (it builds at one size)")
    return Scale("", cfg.get("depth_multiple", 1.0), cfg.get("width_multiple", 1.0), math.inf)


class Context(NamedTuple):
    cfg: Mapping
    scale: Scale
    outputs: list  # channels of the layers before this one
    ch_in: int

    def input(self, j: int) -> Channels:
        return self.ch_in if j == INPUT else self.outputs[j]

    def previous(self, i: int) -> Channels:
        # parse_model leaves c2 unchanged for some modules, so they report the previous layer's channels
        return self.ch_in if i == 0 else self.outputs[i - 1]

    def value(self, a: Any) -> Any:
        # parse_model turns a string argument naming one of its locals ("nc") into that value
        if isinstance(a, str):
            if a in ("nc", "anchors") and a in self.cfg:
                return self.cfg[a]
            try:
                return ast.literal_eval(a)
            except (ValueError, SyntaxError):
                return a
        return a


def _make_divisible(x: float, divisor: int = 8) -> int:
    return math.ceil(x / divisor) * divisor  # ultralytics.utils.ops.make_divisible and yolov5's are this


def _scaled(layer: Layer, ctx: Context) -> int:
    c2 = ctx.value(layer.args[0])
    return _make_divisible(min(c2, ctx.scale.max_channels) * ctx.scale.width)


def _scaled_v5(layer: Layer, ctx: Context) -> int:
    # yolov5's parse_model leaves c2 unscaled when it equals the Detect output count na * (nc + 5)
    c2 = ctx.value(layer.args[0])
    anchors, nc = ctx.cfg.get("anchors"), ctx.cfg.get("nc", 80)
    na = len(anchors[0]) // 2 if isinstance(anchors, list) else anchors
    return c2 if isinstance(na, int) and c2 == na * (nc + 5) else _make_divisible(c2 * ctx.scale.width)


def _arg(k: int) -> Callable[[Layer, Context], Channels]:
    return lambda layer, ctx: ctx.value(layer.args[k])


def _same(layer: Layer, ctx: Context) -> Channels:
    return ctx.input(layer.inputs[0]) if not isinstance(layer.from_, list) else None


def _previous(layer: Layer, ctx: Context) -> Channels:
    return ctx.previous(layer.index)


def _concat(layer: Layer, ctx: Context) -> int:
    return sum(ctx.input(j) for j in layer.inputs)


def _last_input(layer: Layer, ctx: Context) -> Channels:
    return ctx.input(layer.inputs[-1])


def _resnet_layer(layer: Layer, ctx: Context) -> int:
    c2, is_first = ctx.value(layer.args[1]), ctx.value(layer.args[3])
    return c2 if is_first else 4 * c2


def _torchvision_kind(layer: Layer) -> str:
    return FEATURES if len(layer.args) > 5 and layer.args[5] else FEATURE


class Rule(NamedTuple):
    """How parse_model sets a module's output channels, and what kind of output it has."""

    channels: Callable[[Layer, Context], Channels]
    kind: str | Callable[[Layer], str] = FEATURE


SCALED = Rule(_scaled)
"""``c2 = make_divisible(min(args[0], max_channels) * width, 8)``: parse_model's ``base_modules``."""

_HEAD = Rule(_previous, HEAD)

ULTRALYTICS_RULES: dict[str, Rule] = {
    **dict.fromkeys(
        (
            "Conv",
            "ConvTranspose",
            "GhostConv",
            "Bottleneck",
            "GhostBottleneck",
            "SPP",
            "SPPF",
            "C2fPSA",
            "C2PSA",
            "DWConv",
            "Focus",
            "BottleneckCSP",
            "C1",
            "C2",
            "C2f",
            "C3k2",
            "RepNCSPELAN4",
            "ELAN1",
            "ADown",
            "AConv",
            "SPPELAN",
            "C2fAttn",
            "C3",
            "C3TR",
            "C3Ghost",
            "nn.ConvTranspose2d",
            "DWConvTranspose2d",
            "C3x",
            "RepC3",
            "PSA",
            "SCDown",
            "C2fCIB",
            "A2C2f",
        ),
        SCALED,
    ),
    "Classify": Rule(_arg(0), HEAD),  # the class count, never width-scaled
    "AIFI": Rule(_previous),
    "HGStem": Rule(_arg(1)),
    "HGBlock": Rule(_arg(1)),
    "ResNetLayer": Rule(_resnet_layer),
    "nn.BatchNorm2d": Rule(_previous),
    "Concat": Rule(_concat),
    "CBLinear": Rule(_arg(0), FEATURES),
    "CBFuse": Rule(_last_input),
    "TorchVision": Rule(_arg(0), _torchvision_kind),
    "Index": Rule(_arg(0)),
    "ImagePoolingAttn": Rule(_previous, OTHER),
    **dict.fromkeys(
        (
            "Detect",
            "WorldDetect",
            "YOLOEDetect",
            "Segment",
            "Segment26",
            "YOLOESegment",
            "YOLOESegment26",
            "Pose",
            "Pose26",
            "OBB",
            "OBB26",
            "v10Detect",
            "Depth",
            "SemanticSegment",
            "RTDETRDecoder",
        ),
        _HEAD,
    ),
}
"""Ultralytics' parse_model as data (ultralytics 8.4). Unlisted modules keep their input's channels."""

YOLOV5_RULES: dict[str, Rule] = {
    **dict.fromkeys(
        (
            "Conv",
            "GhostConv",
            "Bottleneck",
            "GhostBottleneck",
            "SPP",
            "SPPF",
            "DWConv",
            "MixConv2d",
            "Focus",
            "CrossConv",
            "BottleneckCSP",
            "C3",
            "C3TR",
            "C3SPP",
            "C3Ghost",
            "nn.ConvTranspose2d",
            "DWConvTranspose2d",
            "C3x",
        ),
        Rule(_scaled_v5),
    ),
    "nn.BatchNorm2d": Rule(_previous),
    "Concat": Rule(_concat),
    "Contract": Rule(lambda layer, ctx: _same(layer, ctx) * ctx.value(layer.args[0]) ** 2),
    "Expand": Rule(lambda layer, ctx: _same(layer, ctx) // ctx.value(layer.args[0]) ** 2),
    "Detect": _HEAD,
    "Segment": _HEAD,
}
"""The original YOLOv5 repository's parse_model (v6.0 and later) as data: no ``max_channels``."""

_DEFAULT = Rule(_same)


@dataclass(frozen=True)
class LayerChannels:
    """A layer with its input and output channels at one scale."""

    index: int
    module: str
    c_in: Channels
    c_out: Channels
    kind: str


def rules_for(cfg: Mapping) -> dict[str, Rule]:
    """The rule table of ``cfg``'s dialect."""
    return YOLOV5_RULES if is_yolov5_original(cfg) else ULTRALYTICS_RULES


def layer_channels(cfg: Mapping, scale: str | None = None, ch_in: int = 3) -> list[LayerChannels]:
    """Input and output channels and output kind of every layer of ``cfg`` at ``scale``."""
    table, sc = rules_for(cfg), resolve_scale(cfg, scale)
    outputs: list = []
    out = []
    for layer in map(plain, layers(cfg)):  # a block with attention inside has its block's channels
        ctx = Context(cfg, sc, outputs, ch_in)
        rule = table.get(layer.module, _DEFAULT)
        c_in = [ctx.input(j) for j in layer.inputs] if isinstance(layer.from_, list) else ctx.input(layer.inputs[0])
        c_out = rule.channels(layer, ctx)
        kind = rule.kind(layer) if callable(rule.kind) else rule.kind
        if c_out is None or (isinstance(c_out, list) and kind == FEATURE):
            kind = OTHER
        outputs.append(c_out)
        out.append(LayerChannels(layer.index, layer.module, c_in, c_out, kind))
    return out


def output_channels(cfg: Mapping, scale: str | None = None, ch_in: int = 3) -> list[Channels]:
    """Output channels of every layer of ``cfg`` at ``scale`` (what parse_model records in ``ch``)."""
    return [x.c_out for x in layer_channels(cfg, scale, ch_in)]
