"""Polarized Self-Attention (PSA): Liu, Liu, Fan & Huang, "Polarized Self-Attention: Towards High-quality
Pixel-wise Regression", 2021, https://arxiv.org/abs/2107.00782 (official code: https://github.com/DeLightCMU/PSA).

Self-attention flavoured, but each branch collapses one dimension completely (the "polarization"): the
channel-only branch produces a ``(C, 1, 1)`` weight, the spatial-only branch a ``(1, H, W)`` weight. The
survey (Guo et al. 2022) files it under channel & spatial attention, and so does the registry.
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import LayerType, MultiGate, check_positive_int
from attnyolo.registry import register

_PAPER = "Polarized Self-Attention: Towards High-quality Pixel-wise Regression"
_URL = "https://arxiv.org/abs/2107.00782"
_NOTES = (
    "Category channel_spatial as in the survey, though self-attention flavoured (softmax-weighted pooling). "
    "No installed reference; tests re-state the paper's equations by loops. Follows the paper's equations "
    "(channel-only: softmax over HW, Wz then LayerNorm over C; spatial-only: softmax over the C/2 channels of "
    "GAP(Wq)). The official code differs from the paper (no LayerNorm in PSA_p, softmax over HW in the spatial "
    "branch of PSA_p, a bottleneck in PSA_s), so its checkpoints do not load. Inner width max(1, C // 2); "
    "convs without bias, Wq/Wv Kaiming-normal (fan_in) as the official code."
)


@register(
    "psa_p",
    category="channel_spatial",
    paper=_PAPER,
    year=2021,
    url=_URL,
    preset={"layout": "parallel"},
    notes=_NOTES,
)
@register(
    "psa_s",
    category="channel_spatial",
    paper=_PAPER,
    year=2021,
    url=_URL,
    preset={"layout": "sequential"},
    notes=_NOTES,
)
class PolarizedSelfAttention(nn.Module):
    """Polarized Self-Attention: channel-only and spatial-only self-attention, in parallel or in sequence.

    Channel-only (paper Eq. 1): ``A_ch = sigmoid(LN(Wz(Wv(x) @ softmax_HW(Wq(x)))))`` with ``Wq: C->1``,
    ``Wv: C->C/2``, ``Wz: C/2->C``, giving one weight per channel. Spatial-only (Eq. 2):
    ``A_sp = sigmoid(softmax_C(GAP(Wq'(x))) @ Wv'(x))`` with ``Wq', Wv': C->C/2``, giving one weight per
    position. Parallel (Eq. 3): ``y = A_ch(x) * x + A_sp(x) * x``. Sequential (Eq. 4):
    ``z = A_ch(x) * x``, ``y = A_sp(z) * z``.

    Differences: the official code does not implement these equations exactly (see the spec's notes); this
    follows the paper. Inner width ``max(1, C // 2)`` so ``C = 1`` works. ``gate`` returns the full applied
    map: ``sigmoid(ch) + sigmoid(sp)`` (parallel) or ``sigmoid(ch) * sigmoid(sp)`` (sequential).

    Args:
        channels: input channels ``C``.
        layout: ``"parallel"`` (PSA_p) or ``"sequential"`` (PSA_s).
        gate_layer: the two branches' gate (paper: sigmoid).
    """

    def __init__(self, channels: int, *, layout: str = "parallel", gate_layer: LayerType = "sigmoid"):
        super().__init__()
        check_positive_int("channels", channels)
        if layout not in ("parallel", "sequential"):
            raise ValueError(f"layout must be 'parallel' or 'sequential', got {layout!r}")
        self.layout = layout
        mid = max(1, channels // 2)
        self.ch_wq = nn.Conv2d(channels, 1, 1, bias=False)
        self.ch_wv = nn.Conv2d(channels, mid, 1, bias=False)
        self.ch_wz = nn.Conv2d(mid, channels, 1, bias=False)
        self.ch_norm = nn.LayerNorm(channels)
        self.sp_wq = nn.Conv2d(channels, mid, 1, bias=False)
        self.sp_wv = nn.Conv2d(channels, mid, 1, bias=False)
        self.gate = MultiGate(gate_layer, combine="sum" if layout == "parallel" else "prod", kind="channel_spatial")
        for conv in (self.ch_wq, self.ch_wv, self.sp_wq, self.sp_wv):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")

    def channel_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-only branch before the sigmoid: ``(B, C, 1, 1)``."""
        q = self.ch_wq(x).flatten(2).softmax(-1)  # (B, 1, HW)
        v = self.ch_wv(x).flatten(2)  # (B, C/2, HW)
        z = self.ch_wz((v @ q.transpose(1, 2)).unsqueeze(-1))  # (B, C, 1, 1)
        return self.ch_norm(z.flatten(1)).reshape(z.shape)

    def spatial_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial-only branch before the sigmoid: ``(B, 1, H, W)``."""
        b, _, h, w = x.shape
        q = self.sp_wq(x).mean((2, 3)).softmax(-1).unsqueeze(1)  # (B, 1, C/2)
        v = self.sp_wv(x).flatten(2)  # (B, C/2, HW)
        return (q @ v).reshape(b, 1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        a_ch = self.channel_logits(x)
        if self.layout == "parallel":
            return x * self.gate(a_ch, self.spatial_logits(x))
        # the spatial branch reads the channel-refined map; gate.fn keeps this inner sigmoid out of the hook
        return x * self.gate(a_ch, self.spatial_logits(x * self.gate.fn(a_ch)))
