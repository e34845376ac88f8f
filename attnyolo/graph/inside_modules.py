"""The modules of attention inside blocks (see :mod:`attnyolo.graph.inside` for the YAML side), and the parameter
count they add (:func:`inner_params`).

When Ultralytics builds a block row that carries ``{inside: <name>}``, attnyolo's parse_model hook
(:mod:`attnyolo.graph.ultralytics`) hands parse_model the row without the option, then calls :func:`patch` on
the built block: every residual bottleneck in it (Ultralytics' ``Bottleneck``, ``RepBottleneck``,
``GhostBottleneck``, ``CIB``) gets an ``attn`` submodule, an :class:`AttentionLayer` adapter (identity start
through ``gamma``, as for inserted layers), and its class becomes the subclass below whose ``forward`` applies
``attn`` on the residual branch after the last convolution, before the shortcut add. Nothing else changes:
the bottleneck's own tensors keep their keys (``model.4.m.0.cv1.conv.weight``), the new ones sit under
``model.4.m.0.attn.``, and with ``gamma = 0`` the output is the base block's bit for bit (``y + 0 * d == y``).

The subclasses are module-level classes, so a pickled model finds them in a fresh process, and
:func:`attnyolo.graph.register` adds them to torch's safe globals for ``weights_only`` loading.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from ultralytics.nn.modules.block import CIB, Bottleneck, GhostBottleneck, RepBottleneck

from attnyolo.graph.adapter import adapter_class
from attnyolo.graph.errors import BuildError
from attnyolo.graph.inside import bottlenecks, refuse_temporal
from attnyolo.graph.inside_syntax import option_of, split_option
from attnyolo.graph.layers import layers
from attnyolo.registry import describe


class InsideBottleneck(Bottleneck):
    """Ultralytics ``Bottleneck`` with an attention after ``cv2``: ``x + attn(cv2(cv1(x)))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.cv2(self.cv1(x)))
        return x + y if self.add else y


class InsideRepBottleneck(RepBottleneck):
    """Ultralytics ``RepBottleneck`` (RepNCSPELAN4's) with an attention after ``cv2``."""

    forward = InsideBottleneck.forward


class InsideGhostBottleneck(GhostBottleneck):
    """Ultralytics ``GhostBottleneck`` with an attention after its last GhostConv: ``attn(conv(x)) + shortcut(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.conv(x)) + self.shortcut(x)


class InsideCIB(CIB):
    """YOLOv10's ``CIB`` with an attention after its last convolution: ``x + attn(cv1(x))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.cv1(x))
        return x + y if self.add else y


def _ghost_width(b: GhostBottleneck) -> int:
    last = b.conv[-1]  # GhostConv(c_, c2): two halves of c2 // 2 concatenated
    return last.cv1.conv.out_channels + last.cv2.conv.out_channels


INSIDE: dict[type, tuple[type, object]] = {
    Bottleneck: (InsideBottleneck, lambda b: b.cv2.conv.out_channels),
    RepBottleneck: (InsideRepBottleneck, lambda b: b.cv2.conv.out_channels),
    GhostBottleneck: (InsideGhostBottleneck, _ghost_width),
    CIB: (InsideCIB, lambda b: b.cv1[-1].conv.out_channels),
}
"""Bottleneck class -> (its inside subclass, the width of its residual branch)."""

CLASSES = tuple(cls for cls, _ in INSIDE.values())


def patch(block: nn.Module, name: str, hparams: Mapping, options: Mapping, where: str = "") -> int:
    """Put zoo attention ``name`` inside every residual bottleneck of ``block``, in place; returns how many."""
    adapter = adapter_class(name)
    targets = [m for m in block.modules() if type(m) in INSIDE]
    if not targets:
        raise BuildError(f"{where}{type(block).__name__} has no residual bottleneck to put {name!r} inside")
    for b in targets:
        cls, width = INSIDE[type(b)]
        # parameters are created on the CPU like the rest of a fresh model; the block is not moved yet
        b.attn = adapter([width(b)], 0, dict(hparams), dict(options))
        b.__class__ = cls
    return len(targets)


def patch_model(layers: nn.Module, plan: Mapping[int, Mapping]) -> None:
    """Apply the hook's ``plan`` (layer index -> inside option) to the layers parse_model built."""
    for i, option in plan.items():
        name, hparams, options = split_option(option)
        block = layers[i]
        refuse_temporal(describe(name), f"layer {i} ({type(block).__name__})")  # YOLO(yaml) skips attnyolo's checks
        patch(block, name, hparams, options, f"layer {i}: ")
        block.np = sum(p.numel() for p in block.parameters())  # parse_model's count, now with the attention


def inner_params(cfg: Mapping, i: int, scale: str | None = None) -> int:
    """Parameters the inside option of layer ``i`` adds at ``scale``: count x (module + its gamma, if any).

    The gamma is counted as the adapter decides it (:class:`attnyolo.graph.adapter.AttentionLayer`), so this
    is exact; it builds one adapter, at the bottleneck width.
    """
    name, hparams, options = split_option(option_of(layers(cfg)[i].args))
    found = bottlenecks(cfg, i, scale)
    one = adapter_class(name)([found.width], 0, hparams, options)
    return found.count * sum(p.numel() for p in one.parameters())
