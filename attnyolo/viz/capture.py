"""Attention weights of every attention layer, captured through the zoo's ``gate`` contract.

Every zoo module applies its weights through a submodule named ``gate`` (modules with two, such as CBAM, also
have ``channel_gate``), so one forward hook per gate sees the weights actually applied, whatever the module.
Softmax gates switch to the explicit attention matrix while hooked (the fused kernel never forms it). Each gate
declares its kind (:mod:`attnyolo.attention.gate_kinds`), which fixes the tensor's layout relative to the feature
map ``(B, C, H, W)`` entering the layer; the kind, not the tensor's shape, says how it becomes a map:

- ``channel``: a **channel** vector ``(C,)`` (a clip's frames averaged);
- ``spatial`` (maps over positions, several averaged), ``channel_spatial`` (averaged over channels) and ``local``
  (per position, the largest weight over its neighbourhood: how sharply it attends locally): a **spatial** map
  ``(h, w)``, usually ``(H, W)`` (a 2x sub-sampled grid for MobileViTv2's patches);
- ``self_attention``: the **self-attention** row of the query position, averaged over heads, as ``(H, W)`` when the
  keys are the positions or a 2x pooled grid of them (otherwise the row as a ``(M,)`` vector over the keys);
- ``channel_affinity``: the **channel affinity** matrix ``(C, C)`` (DANet's channel branch), averaged;
- ``branch``: **branch** weights ``(K, C)``, one row per branch (SK, split attention, CoT's radix, TAM's kernel);
- ``temporal``: **temporal** attention between a clip's frames, averaged: ``(T, T)``;
- ``window``: attention inside windows, axes or blocks: the mean ``(n, m)`` block, shown as **weights** (a
  **self-attention** row as above when one window covers the whole map).

Value ranges are the gate's: sigmoid gates in [0, 1], softmax rows in [0, 1] summing to 1, other activations as
the module documents (``describe(name).notes``). A gate whose weights do not fit its declared kind is an error.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from attnyolo.attention.gate_kinds import GATE_KINDS, gate_modules, layout_problem, pooled_grid
from attnyolo.graph.attention_layers import attention_layers, label_order
from attnyolo.registry import describe
from attnyolo.viz.errors import VizError
from attnyolo.viz.images import prepare
from attnyolo.viz.models import torch_model

inserted_attention = attention_layers  # the name viz exported before attention_layers existed


@dataclass
class AttentionMap:
    """One captured weight tensor, interpreted."""

    layer: str  # the attention layer's label: "16" for an inserted row, "4.m.0.attn" inside a block
    attention: str  # zoo name
    gate: str  # the gate's path inside the module ("gate", "channel_gate", "spatial_attention.gate")
    kind: str  # what the map shows: "channel", "spatial", "self-attention", "branch", "temporal", ...
    value: torch.Tensor  # (C,), (h, w) or (H, W)
    gate_kind: str = ""  # the kind the gate declares (attnyolo.attention.gate_kinds)

    @property
    def key(self) -> str:
        return f"{self.layer} {self.attention} ({self.kind})"


@functools.cache
def _fresh_kinds(attention: str, channels: int, frames: int | None) -> dict[str, tuple[str, str | None]]:
    """Kinds of the gates of a freshly built ``attention`` module (by gate path)."""
    module = describe(attention).create(channels, **({"frames": frames} if frames else {}))
    return {path: (g.kind, g.layout) for path, g in gate_modules(module).items()}


def _declared(layer: nn.Module, path: str, gate: nn.Module, frames: int | None) -> tuple[str, str | None]:
    """The gate's declared kind and layout. A gate pickled before gates declared kinds has none: the same gate of
    a freshly built module of that zoo name (kinds do not depend on trained weights) gives it."""
    kind = getattr(gate, "kind", None)
    if kind in GATE_KINDS:
        return kind, getattr(gate, "layout", None)
    try:
        return _fresh_kinds(layer.attention, layer.channels, frames)[path]
    except (KeyError, ValueError, TypeError) as e:
        raise VizError(f"{layer.attention}: gate {path!r} declares no kind and none can be derived ({e})") from None


def _self_attention_row(t: torch.Tensor, h: int, w: int, query: tuple[int, int]) -> torch.Tensor:
    row = t.reshape(-1, t.shape[-2], t.shape[-1])[:, query[0] * w + query[1]].mean(0)
    grid = pooled_grid(row.numel(), h, w)
    return row.reshape(grid) if grid else row


def _interpret(
    t: torch.Tensor,
    kind: str,
    layout: str | None,
    feature: tuple[int, int, int, int],
    query: tuple[int, int],
    frames: int | None,
) -> tuple[str, torch.Tensor]:
    """``(what the map shows, the map)`` of a gate's weights ``t``, read as its declared ``kind``."""
    problem = layout_problem(kind, layout, tuple(t.shape), feature, frames)
    if problem:
        raise VizError(f"cannot read the attention weights: {problem}")
    _, c, h, w = feature
    t = t.detach().float()
    if kind == "channel":  # (B, C, 1, 1), (B, C), ECA's (B, 1, C), TAM's (clips, C, T)
        return "channel", t.reshape(t.shape[0], c, -1)[0].mean(-1)
    if kind in ("spatial", "channel_spatial"):  # (B, ..., H, W) or (B, ..., n) over a grid of n positions
        if tuple(t.shape[-2:]) == (h, w):
            return "spatial", t[0].reshape(-1, h, w).mean(0)
        grid = pooled_grid(t.shape[-1], h, w)
        return "spatial", t[0].reshape(-1, t.shape[-1]).mean(0).reshape(grid)
    if kind == "local":  # (B, ..., k², H, W): the strongest neighbour weight at each position
        return "spatial", t.reshape(feature[0], -1, t.shape[-3], h, w)[0].amax(1).mean(0)
    if kind == "self_attention":  # (..., H*W, M), or T*H*W queries per clip: a query of the first frame
        return "self-attention", _self_attention_row(t, h, w, query)
    if kind == "channel_affinity":
        return "channel affinity", t.reshape(-1, c, c).mean(0)
    if kind == "temporal":
        return "temporal", t.reshape(-1, frames, frames).mean(0)
    if kind == "branch":  # (K, C), one row per branch
        if layout == "CK":
            return "branch", t.reshape(-1, c, t.shape[-1])[0].T
        return "branch", t.reshape(t.shape[0], -1, c)[0]
    # window: one window covering the whole map is global self-attention; otherwise the mean block
    if t.shape[-2] == h * w and h * w > 1:
        return "self-attention", _self_attention_row(t, h, w, query)
    return "weights", t.reshape(-1, t.shape[-2], t.shape[-1]).mean(0)


@contextmanager
def capture_attention(
    model: nn.Module, layers: list[str] | None = None, query: tuple[float, float] = (0.5, 0.5)
) -> Iterator[list[AttentionMap]]:
    """Within the block, every forward of ``model`` appends the weights of the chosen attention layers.

    Hooks are removed on exit, so the model is left as it was; hooks only read, so outputs are unchanged.
    ``query`` (y, x as fractions of the map) picks the self-attention row, resolved per feature map size.
    """
    found = attention_layers(model)
    if layers is not None:
        missing = [x for x in layers if x not in found]
        if missing:
            raise VizError(
                f"layer(s) {missing} hold no inserted attention; layers that do: {sorted(found, key=label_order)}"
            )
        found = {k: found[k] for k in layers}
    out: list[AttentionMap] = []
    handles = []
    for label, layer in found.items():
        shape: dict[str, tuple] = {}
        frames = getattr(layer.attn, "frames", None) if describe(layer.attention).needs_frames else None

        def pre(_m, args, shape=shape):
            shape["x"] = tuple(args[0].shape)

        handles.append(layer.register_forward_pre_hook(pre))
        for gpath, gate in gate_modules(layer.attn).items():
            declared = _declared(layer, gpath, gate, frames)

            def hook(_m, _inp, y, label=label, layer=layer, gpath=gpath, shape=shape, frames=frames, declared=declared):
                h, w = shape["x"][-2:]
                q = (min(int(query[0] * h), h - 1), min(int(query[1] * w), w - 1))
                t = y[0] if isinstance(y, tuple | list) else y
                kind, value = _interpret(t, *declared, shape["x"], q, frames)
                out.append(AttentionMap(label, layer.attention, gpath, kind, value.cpu(), declared[0]))

            handles.append(gate.register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def _strongest_centre(pred: torch.Tensor, size: tuple[int, int]) -> tuple[float, float] | None:
    """Centre (y, x) as fractions of the input of the highest-scoring raw prediction of a Detect output."""
    if pred.ndim != 3 or pred.shape[1] <= 4:
        return None
    scores = pred[0, 4:].amax(0)
    best = int(scores.argmax())
    cy, cx = float(pred[0, 1, best]) / size[0], float(pred[0, 0, best]) / size[1]
    if not (0 <= cy <= 1 and 0 <= cx <= 1):  # a box centre off the image (or NaN): no usable detection
        return None
    return cy, cx


def attention_maps(
    model: nn.Module,
    image,
    *,
    layers: list[str] | None = None,
    query: tuple[float, float] | None = None,
    imgsz: int = 320,
) -> dict[str, torch.Tensor]:
    """The attention weights of every inserted attention in ``model`` for one image.

    Args:
        model: an Ultralytics detection model (or ``YOLO`` object) holding zoo attention.
        image: a path, an HWC uint8 RGB array, or a ``(1, 3, H, W)`` float tensor in [0, 1].
        layers: layer labels to capture ("16", "4.m.0.attn": see :mod:`attnyolo.graph.attention_layers`); default
            all.
        query: self-attention query as (y, x) fractions of the image; default the centre of the strongest
            detection (the highest class score of the raw predictions).
        imgsz: letterbox size for paths and arrays.

    Returns:
        ``{"16 cbam (channel)": (C,) tensor, "16 cbam (spatial)": (H, W) tensor, ...}``; a module with two gates
        of the same kind gets the gate's path in its key.
    """
    net = torch_model(model)
    if not attention_layers(net):
        raise VizError("the model holds no inserted attention (insert some with attnyolo.insert)")
    x = prepare(image, imgsz).tensor
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            if query is None:
                pred = net(x)
                pred = pred[0] if isinstance(pred, list | tuple) else pred
                query = _strongest_centre(pred, tuple(x.shape[-2:])) or (0.5, 0.5)
            with capture_attention(net, layers, query=query) as maps:
                net(x)
    finally:
        net.train(was_training)
    return _keyed(maps)


def _keyed(maps: list[AttentionMap]) -> dict[str, torch.Tensor]:
    counts: dict[str, int] = {}
    for m in maps:
        counts[m.key] = counts.get(m.key, 0) + 1
    out = {}
    for m in maps:
        key = m.key if counts[m.key] == 1 else f"{m.layer} {m.attention} ({m.kind}: {m.gate})"
        out[key] = m.value
    return out


def is_spatial(key: str) -> bool:
    """Whether a map of :func:`attention_maps` lies over the image (spatial or self-attention), by its key."""
    return "(spatial" in key or "(self-attention" in key
