"""What a gate's weights are: every gate of the zoo declares its kind, and the kind fixes the tensor's layout.

A zoo module applies its attention weights through gate submodules (``gate``, and ``*_gate`` for a second set);
each declares ``kind`` (one of :data:`GATE_KINDS`) when it is built. The kind says what the weights are and how
the tensor the gate returns is laid out, relative to the feature map ``(B, C, H, W)`` entering the module
(``B`` images; a temporal module's clips of ``T`` frames stack as ``B = clips * T``):

- ``channel``: one weight per channel, the same at every position: ``(B, C, 1, 1)``, ``(B, C)``, ECA's
  ``(B, 1, C)``, or per frame of a clip ``(clips, C, T)`` (TAM): ``C`` weights per image.
- ``spatial``: weights over positions shared by all channels: one map ``(B, 1, H, W)``, or several (descriptors,
  heads, groups) ``(B, ..., H, W)`` / ``(B, ..., H*W)``; positions may be a 2x sub-sampled grid (MobileViTv2's
  patches).
- ``channel_spatial``: one weight per channel and position, ``(B, C, H, W)``.
- ``local``: at every position, weights over its ``k x k`` neighbourhood: ``(B, ..., k², H, W)``.
- ``self_attention``: softmax rows over keys for every query position: ``(..., H*W, M)`` (``T*H*W`` queries per
  clip for space-time modules); the keys are the positions, a sub-sampled grid of them, or learnt tokens.
- ``channel_affinity``: channel-to-channel attention (DANet's channel branch): ``(..., C, C)``.
- ``temporal``: attention between a clip's frames: ``(..., T, T)``.
- ``branch``: weights over ``K`` branches (kernels, splits, radix groups) per channel: layout ``"KC"``
  ``(B, K, C[, 1, 1])`` (the default) or ``"CK"`` ``(..., C, K)``.
- ``window``: attention restricted to local sets of keys (windows, halos, axes, criss-cross paths, areas, blocks):
  ``(..., n, m)`` matrices, one per window, head and image.

:func:`layout_problem` checks a captured tensor against its declared kind; the zoo's contract tests run it on a
real forward of every registered module, and :mod:`attnyolo.viz` reads each kind its own way (no guessing from
shapes).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from torch import nn

GateKind = Literal[
    "channel",
    "spatial",
    "channel_spatial",
    "local",
    "self_attention",
    "channel_affinity",
    "temporal",
    "branch",
    "window",
]
GATE_KINDS: tuple[str, ...] = get_args(GateKind)
BRANCH_LAYOUTS = ("KC", "CK")


def check_gate_kind(kind: object, layout: object = None) -> None:
    """Raise ``ValueError`` naming the value unless ``kind`` (and ``layout``) is one :data:`GATE_KINDS` allows."""
    if kind not in GATE_KINDS:
        raise ValueError(f"gate kind must be one of {', '.join(GATE_KINDS)}; got {kind!r}")
    if layout is not None and not (kind == "branch" and layout in BRANCH_LAYOUTS):
        allowed = f"one of {', '.join(BRANCH_LAYOUTS)}" if kind == "branch" else "none (the kind fixes it)"
        raise ValueError(f"layout of a {kind!r} gate must be {allowed}; got {layout!r}")


class GateModule(nn.Module):
    """Base of every gate: holds the declared ``kind`` (and ``layout`` for branch gates)."""

    kind: str | None = None  # class-level defaults: a gate pickled before kinds existed unpickles with None
    layout: str | None = None

    def __init__(self, *, kind: GateKind, layout: str | None = None) -> None:
        super().__init__()
        check_gate_kind(kind, layout)
        self.kind = kind
        self.layout = layout


def gate_modules(module: nn.Module) -> dict[str, nn.Module]:
    """``{path: gate}`` of every gate in ``module`` (submodules named ``gate`` or ``*_gate``), each gate once
    (a gate shared under two names keeps its first path)."""
    out: dict[int, tuple[str, nn.Module]] = {}
    for path, m in module.named_modules():
        leaf = path.rsplit(".", 1)[-1]
        if leaf == "gate" or leaf.endswith("_gate"):
            out.setdefault(id(m), (path, m))
    return dict(out.values())


def pooled_grid(n: int, h: int, w: int) -> tuple[int, int] | None:
    """The grid of ``n`` positions over an ``h x w`` map: the map itself or a 2x sub-sampling of it (pooled keys,
    MobileViTv2's patches), or ``None``."""
    for hh, ww in ((h, w), ((h + 1) // 2, (w + 1) // 2), (h // 2, w // 2)):
        if hh * ww == n:
            return hh, ww
    return None


def _trailing(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` without its trailing singleton dimensions (``(B, K, C, 1, 1)`` -> ``(B, K, C)``)."""
    end = len(shape)
    while end > 1 and shape[end - 1] == 1:
        end -= 1
    return shape[:end]


def layout_problem(
    kind: str, layout: str | None, shape: tuple[int, ...], feature: tuple[int, int, int, int], frames: int | None
) -> str | None:
    """``None`` when a gate output of ``shape`` fits the declared ``kind`` for a ``feature`` map ``(B, C, H, W)``,
    else what does not fit (``frames``: the clip length of a temporal module, else ``None``)."""
    b, c, h, w = feature
    numel = math.prod(shape)
    want = {
        "channel": f"{b * c} elements (C weights per image)",
        "spatial": "trailing (H, W), H*W, or a 2x sub-sampled grid",
        "channel_spatial": f"(B, C, H, W) = {(b, c, h, w)}",
        "local": "(..., k², H, W)",
        "self_attention": "(..., H*W, M)" + (" or (..., T*H*W, M)" if frames else ""),
        "channel_affinity": f"(..., {c}, {c})",
        "temporal": f"(..., {frames}, {frames})",
        "branch": "(B, K, C[, 1, 1])" if layout != "CK" else "(..., C, K)",
        "window": "(..., n, m) blocks",
    }
    if kind == "channel":
        ok = numel == b * c
    elif kind == "spatial":
        ok = tuple(shape[-2:]) == (h, w) or (len(shape) >= 2 and pooled_grid(shape[-1], h, w) is not None)
    elif kind == "channel_spatial":
        ok = tuple(shape) == (b, c, h, w)
    elif kind == "local":
        ok = len(shape) >= 4 and tuple(shape[-2:]) == (h, w) and math.isqrt(shape[-3]) ** 2 == shape[-3] > 1
    elif kind == "self_attention":
        ok = len(shape) >= 3 and shape[-2] in {h * w, (frames or 1) * h * w}
    elif kind == "channel_affinity":
        ok = len(shape) >= 3 and tuple(shape[-2:]) == (c, c)
    elif kind == "temporal":
        ok = frames is not None and len(shape) >= 3 and tuple(shape[-2:]) == (frames, frames)
    elif kind == "branch":
        if layout == "CK":
            ok = len(shape) >= 2 and shape[-1] > 1 and math.prod(shape[:-1]) % c == 0
        else:
            core = _trailing(tuple(shape))
            ok = len(core) == 3 and core[-1] == c and core[1] > 1
    elif kind == "window":  # blocks of any size: an axis of a square map is (H, H) = (H, W)
        ok = len(shape) >= 3
    else:
        return f"unknown gate kind {kind!r}; known: {', '.join(GATE_KINDS)}"
    if ok:
        return None
    return f"a {kind} gate gave {tuple(shape)} for a {tuple(feature)} feature map; expected {want[kind]}"
