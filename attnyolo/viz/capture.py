"""Attention weights of every inserted attention, captured through the zoo's ``gate`` contract.

Every zoo module applies its weights through a submodule named ``gate`` (modules with two, such as CBAM, also
have ``channel_gate``), so one forward hook per gate sees the weights actually applied, whatever the module.
Softmax gates switch to the explicit attention matrix while hooked (the fused kernel never forms it). The
captured tensor's shape says what it is, relative to the feature map ``(B, C, H, W)`` entering the layer:

- ``(B, C, 1, 1)``, ``(B, C)`` or ``(B, 1, C)``: **channel** weights, returned as a ``(C,)`` vector;
- ``(B, c, h, w)`` with ``h`` or ``w`` > 1: a **spatial** map, averaged over its channels, returned ``(h, w)``
  (usually ``(H, W)``; coordinate attention gives ``(H, 1)`` and ``(1, W)`` strips);
- ``(..., N, M)`` with ``N`` = H·W: **self-attention** rows; the row of the query position, averaged over heads,
  returned as ``(H, W)`` when ``M`` = H·W (otherwise the row as a ``(M,)`` vector over the module's keys);
- ``(..., C, C)``: a **channel affinity** matrix (DANet's channel branch), averaged over the batch: ``(C, C)``;
- ``(B, M, C, 1, 1)``: **branch** weights (SK, split attention): ``(M, C)``, one row per branch;
- ``(..., T, T)`` of a temporal module: **temporal** attention between a clip's frames, averaged: ``(T, T)``;
- ``(B, ..., H·W)``: a distribution over positions (A2's gather, lambda's keys, external attention): **spatial**;
- anything else with two or more dimensions (window attention): **weights**, the mean ``(N, M)`` block.

Value ranges are the gate's: sigmoid gates in [0, 1], softmax rows in [0, 1] summing to 1, other activations as
the module documents (``describe(name).notes``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from attnyolo.registry import describe
from attnyolo.viz.errors import VizError


@dataclass
class AttentionMap:
    """One captured weight tensor, interpreted."""

    layer: str  # "16" for an inserted row, "4.m.0" for attention inside a block
    attention: str  # zoo name
    gate: str  # the gate's path inside the module ("gate", "channel_gate", "spatial_attention.gate")
    kind: str  # "channel", "spatial" or "self-attention"
    value: torch.Tensor  # (C,), (h, w) or (H, W)

    @property
    def key(self) -> str:
        return f"{self.layer} {self.attention} ({self.kind})"


def _layer_label(path: str) -> str:
    # "model.16" -> "16"; "model.4.m.0.attn_layer" -> "4.m.0"
    parts = path.split(".")
    if parts and parts[0] == "model":
        parts = parts[1:]
    while parts and not parts[-1].isdigit():
        parts = parts[:-1]
    return ".".join(parts) or path


def inserted_attention(model: nn.Module) -> dict[str, nn.Module]:
    """``{layer label: AttentionLayer}`` for every zoo attention in ``model``, inserted rows and inside blocks."""
    from attnyolo.graph.ultralytics import AttentionLayer

    net = getattr(model, "model", model)
    net = net if isinstance(net, nn.Module) else model
    root = model if isinstance(model, nn.Module) else net
    found = {}
    for path, m in root.named_modules():
        if isinstance(m, AttentionLayer):
            found[_layer_label(path)] = m
    return found


def _gates(layer: nn.Module) -> dict[str, nn.Module]:
    out: dict[int, tuple[str, nn.Module]] = {}
    for path, m in layer.attn.named_modules():
        leaf = path.rsplit(".", 1)[-1]
        if leaf == "gate" or leaf.endswith("_gate"):
            out.setdefault(id(m), (path, m))  # a gate shared by two names is hooked once
    return dict(out.values())


def _key_grid(m: int, h: int, w: int) -> tuple[int, int] | None:
    # keys sub-sampled by a 2x2 pool (non-local's option) still form a grid
    for hh, ww in ((h, w), ((h + 1) // 2, (w + 1) // 2), (h // 2, w // 2)):
        if hh * ww == m:
            return hh, ww
    return None


def _interpret(
    t: torch.Tensor, feature: tuple[int, int, int, int], query: tuple[int, int], frames: int | None
) -> tuple[str, torch.Tensor]:
    _, c, h, w = feature
    t = t.detach().float()
    if frames is not None and t.ndim >= 2 and t.shape[-2:] == (frames, frames):  # attention across a clip's frames
        return "temporal", t.reshape(-1, frames, frames).mean(0)
    if t.ndim >= 3 and t.shape[-2] == h * w and h * w > 1:
        row = t.reshape(-1, t.shape[-2], t.shape[-1])[:, query[0] * w + query[1]].mean(0)
        grid = _key_grid(row.numel(), h, w)
        return "self-attention", row.reshape(grid) if grid else row
    if t.ndim >= 3 and t.shape[-2:] == (c, c):  # channel-to-channel affinity (DANet's channel branch)
        return "channel affinity", t.reshape(-1, c, c).mean(0)
    if t.ndim == 5 and t.shape[-2:] == (1, 1):  # per-branch channel weights (SK, split attention)
        return "branch", t[0, ..., 0, 0]
    if t.ndim == 2 or (t.ndim == 4 and t.shape[-2:] == (1, 1)) or (t.shape[-1] == c and t.numel() == t.shape[0] * c):
        return "channel", t.reshape(t.shape[0], -1)[0]  # (B, C), (B, C, 1, 1), ECA's (B, 1, C)
    if t.ndim >= 3 and t.shape[-2:] == (h, w):  # a map, or per-position weights over a neighbourhood (CoT)
        return "spatial", t[0].reshape(-1, h, w).mean(0)
    if t.ndim == 4:  # (B, c, h', w'): strips of coordinate attention, pooled maps
        return "spatial", t[0].mean(0)
    if t.ndim == 5:  # grouped gates (B, groups, c, h, w)
        return "spatial", t[0].reshape(-1, *t.shape[-2:]).mean(0)
    if t.ndim >= 2 and t.shape[-1] == h * w:  # distributions over positions (A2's gather, lambda's keys, EANet)
        return "spatial", t[0].reshape(-1, h * w).mean(0).reshape(h, w)
    if t.ndim == 3 and t.shape[-1] == c:  # (B, K, C): split attention over K splits (S2-MLPv2)
        return "branch", t[0]
    if t.ndim >= 2:  # window attention and other local layouts: the mean (…, N, M) block, shown as a matrix
        return "weights", t.reshape(-1, t.shape[-2], t.shape[-1]).mean(0)
    raise VizError(f"cannot interpret an attention weight of shape {tuple(t.shape)} for a {feature} feature map")


@contextmanager
def capture_attention(
    model: nn.Module, layers: list[str] | None = None, query: tuple[float, float] = (0.5, 0.5)
) -> Iterator[list[AttentionMap]]:
    """Within the block, every forward of ``model`` appends the weights of the chosen attention layers.

    Hooks are removed on exit, so the model is left as it was; hooks only read, so outputs are unchanged.
    ``query`` (y, x as fractions of the map) picks the self-attention row, resolved per feature map size.
    """
    found = inserted_attention(model)
    if layers is not None:
        missing = [x for x in layers if x not in found]
        if missing:
            raise VizError(
                f"layer(s) {missing} hold no inserted attention; layers that do: {sorted(found, key=_sort_key)}"
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
        for gpath, gate in _gates(layer).items():

            def hook(_m, _inp, y, label=label, layer=layer, gpath=gpath, shape=shape, frames=frames):
                h, w = shape["x"][-2:]
                q = (min(int(query[0] * h), h - 1), min(int(query[1] * w), w - 1))
                kind, value = _interpret(y, shape["x"], q, frames)
                out.append(AttentionMap(label, layer.attention, gpath, kind, value.cpu()))

            handles.append(gate.register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def _sort_key(label: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in label.split("."))


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
        layers: layer labels to capture ("16", "4.m.0"); default all.
        query: self-attention query as (y, x) fractions of the image; default the centre of the strongest
            detection (the highest class score of the raw predictions).
        imgsz: letterbox size for paths and arrays.

    Returns:
        ``{"16 cbam (channel)": (C,) tensor, "16 cbam (spatial)": (H, W) tensor, ...}``; a module with two gates
        of the same kind gets the gate's path in its key.
    """
    from attnyolo.viz.images import prepare
    from attnyolo.viz.models import torch_model

    net = torch_model(model)
    if not inserted_attention(net):
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
