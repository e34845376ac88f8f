"""Coordinate-style attention: weights factorised along the height and width axes.

- Coordinate Attention (CA): Hou, Zhou & Feng, "Coordinate Attention for Efficient Mobile Network Design",
  CVPR 2021, https://arxiv.org/abs/2103.02907 (official code: https://github.com/houqb/CoordAttention).
- Simple Coordinate Attention: timm's simplified CA (``timm.layers.coord_attn.SimpleCoordAttn``), no paper.
- Efficient Local Attention (ELA): Xu & Wan, "ELA: Efficient Local Attention for Deep Convolutional Neural
  Networks", 2024, https://arxiv.org/abs/2403.01123.

Each pools the map into an H-strip ``(B, C, H, 1)`` and a W-strip ``(B, C, 1, W)``, encodes the strips and
gates ``x`` with weights that broadcast back to ``(B, C, H, W)``, so the attention keeps position along
each axis (unlike SE's single global pool).
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import (
    Gate,
    LayerType,
    MultiGate,
    check_divisible,
    check_odd_kernel,
    check_positive,
    check_positive_int,
    create_act,
    mean_pool,
    reduced_channels,
)
from attnyolo.registry import register

_CA_PAPER = "Coordinate Attention for Efficient Mobile Network Design"
_CA_URL = "https://arxiv.org/abs/2103.02907"


@register(
    "coord",
    category="channel_spatial",
    paper=_CA_PAPER,
    year=2021,
    url=_CA_URL,
    reference="timm:CoordAttn (rd_channels=max(8, C // 32), bias=True)",
    notes=(
        "Defaults follow the official code: hidden width max(8, C // 32), 1x1 convs with bias, BatchNorm, "
        "h_swish. timm's CoordAttn defaults differ (width make_divisible(C/16 * 2/3, 8), bias=False); "
        "pass rd_channels/bias to reproduce it. The H and W weights are multiplied inside one gate."
    ),
)
class CoordAttention(nn.Module):
    """Coordinate Attention: ``y = x * sigmoid(F_h(f_h)) * sigmoid(F_w(f_w))`` (paper Eq. 4-6).

    The H-strip (mean over W) and W-strip (mean over H) are concatenated along the spatial axis, mixed by a
    shared 1x1 conv ``F1`` + BatchNorm + h_swish to ``rd`` channels, split back, and expanded by two 1x1
    convs ``F_h``, ``F_w`` to per-(channel, row) and per-(channel, column) weights.

    Differences: none from the official code at the defaults (its ``mip = max(8, inp // reduction)``,
    ``bias=True`` convs, BatchNorm, ``h_swish = x * relu6(x + 3) / 6`` which is ``nn.Hardswish``); parameter
    names ``conv1``, ``bn1``, ``conv_h``, ``conv_w`` match both the official ``coordatt.py`` and timm, so their
    state dicts load as is. timm's ``CoordAttn`` uses ``bias=False`` and a width of
    ``make_divisible(C * 1/16 * 2/3, 8)``; ``rd_channels`` and ``bias`` reproduce it exactly. The product of
    the two weights is formed in ``gate`` (one hook sees the full map).

    Args:
        channels: input channels ``C``.
        rd_ratio: hidden width as a fraction of ``C`` (paper: reduction ratio 32).
        rd_channels: explicit hidden width; overrides ``rd_ratio``.
        rd_divisor: the hidden width is rounded down to a multiple of this (1 = the paper's ``C // 32``).
        rd_min: the hidden width is never below this (paper: 8).
        bias: bias in the three 1x1 convs (official code: True).
        act_layer: activation after the BatchNorm (paper: h_swish).
        gate_layer: gate on each strip's weights (paper: sigmoid).
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 32,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        rd_min: int = 8,
        bias: bool = True,
        act_layer: LayerType = "hard_swish",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        if rd_channels is None:
            check_positive("rd_ratio", rd_ratio)
            check_positive_int("rd_divisor", rd_divisor)
            check_positive_int("rd_min", rd_min)
            # floor like the official `inp // reduction`; the epsilon keeps e.g. 96 * (1/3) from flooring to 31
            rd_channels = max(rd_min, int(channels * rd_ratio + 1e-6) // rd_divisor * rd_divisor)
        check_positive_int("rd_channels", rd_channels)
        self.conv1 = nn.Conv2d(channels, rd_channels, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(rd_channels)
        self.act = create_act(act_layer)
        self.conv_h = nn.Conv2d(rd_channels, channels, 1, bias=bias)
        self.conv_w = nn.Conv2d(rd_channels, channels, 1, bias=bias)
        self.gate = MultiGate(gate_layer, combine="prod", kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        h, w = x.shape[-2:]
        z_h = mean_pool(x, 3)  # (B, C, H, 1): pooled along W, Eq. 2
        z_w = mean_pool(x, 2).transpose(2, 3)  # (B, C, W, 1): pooled along H, Eq. 3
        f = self.act(self.bn1(self.conv1(torch.cat([z_h, z_w], dim=2))))  # Eq. 4, shared F1
        f_h, f_w = torch.split(f, [h, w], dim=2)
        return x * self.gate(self.conv_h(f_h), self.conv_w(f_w).transpose(2, 3))  # Eq. 5-6


@register(
    "scoord",
    category="channel_spatial",
    paper=_CA_PAPER,
    year=2021,
    url=_CA_URL,
    reference="timm:SimpleCoordAttn",
    notes=(
        "Not in the paper: timm's simplified Coordinate Attention (linear layers, no norm, H and W logits "
        "added before one sigmoid). Same defaults and parameter names as timm's SimpleCoordAttn."
    ),
)
class SimpleCoordAttention(nn.Module):
    """Simplified Coordinate Attention: ``y = x * sigmoid(F_h(z_h) + F_w(z_w))`` with a shared ``F1``.

    timm's variant of CA: the strips go through a shared linear ``fc1`` + activation (no normalisation),
    two linear heads give H and W logits that are added (broadcast to ``(B, C, H, W)``) before one gate.

    Differences: none from timm's ``SimpleCoordAttn`` (same defaults, same parameter names ``fc1``, ``fc_h``,
    ``fc_w``); it is not the paper's CA (no BatchNorm, additive instead of multiplicative recombination).

    Args:
        channels: input channels ``C``.
        rd_ratio: hidden width as a fraction of ``C`` before ``se_factor`` (timm: 1/4).
        rd_channels: explicit hidden width; overrides ``rd_ratio``.
        rd_divisor: the hidden width is rounded to a multiple of this (timm: 8).
        se_factor: extra factor on ``rd_ratio`` (timm: 2/3, keeps the parameter count close to SE's).
        bias: bias in the linear layers.
        act_layer: activation after ``fc1`` (timm: SiLU).
        gate_layer: gate on the summed logits (sigmoid).
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 0.25,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        se_factor: float = 2 / 3,
        bias: bool = True,
        act_layer: LayerType = "silu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive("se_factor", se_factor)
        check_positive("rd_ratio", rd_ratio)
        rd = reduced_channels(channels, rd_ratio * se_factor, rd_channels, rd_divisor, round_limit=0.0)
        self.fc1 = nn.Linear(channels, rd, bias=bias)
        self.act = create_act(act_layer)
        self.fc_h = nn.Linear(rd, channels, bias=bias)
        self.fc_w = nn.Linear(rd, channels, bias=bias)
        self.gate = Gate(gate_layer, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        z_h = mean_pool(x, 3, keepdim=False).transpose(1, 2)  # (B, H, C)
        z_w = mean_pool(x, 2, keepdim=False).transpose(1, 2)  # (B, W, C)
        a_h = self.fc_h(self.act(self.fc1(z_h))).transpose(1, 2).unsqueeze(-1)  # (B, C, H, 1)
        a_w = self.fc_w(self.act(self.fc1(z_w))).transpose(1, 2).unsqueeze(-2)  # (B, C, 1, W)
        return x * self.gate(a_h + a_w)


@register(
    "ela",
    category="channel_spatial",
    paper="ELA: Efficient Local Attention for Deep Convolutional Neural Networks",
    year=2024,
    url="https://arxiv.org/abs/2403.01123",
    constraints="channels divisible by norm_groups (default 16) and by conv_groups when given",
    reference="timm:EfficientLocalAttn (shared=False, norm_groups=1, act_layer='silu')",
    notes=(
        "Defaults follow the paper's listing (ELA-B): one depthwise Conv1d (k=7, no bias) and one "
        "GroupNorm(16) shared by the H and W strips, no activation, sigmoid. timm's EfficientLocalAttn "
        "uses separate convs and norms per axis, GroupNorm(1 group) and a SiLU before the sigmoid."
    ),
)
class EfficientLocalAttention(nn.Module):
    """Efficient Local Attention: ``y = x * sigmoid(GN(conv1d(z_h))) * sigmoid(GN(conv1d(z_w)))``.

    Like Coordinate Attention but without channel reduction or BatchNorm: each strip is filtered along its
    own axis by a 1D (depthwise by default) convolution, normalised with GroupNorm and gated.

    Differences: the paper's listing shares one conv and one GroupNorm between the two strips
    (``shared=True``, the default). timm's ``EfficientLocalAttn`` keeps separate convs/norms per axis
    (as 2D ``(k, 1)``/``(1, k)`` convs), uses GroupNorm with one group and applies SiLU before the sigmoid;
    ``shared=False, norm_groups=1, act_layer="silu"`` reproduces it exactly. The paper's other sizes
    (ELA-T/S/L) are reached with ``kernel_size``, ``conv_groups`` and ``norm_groups``.

    Args:
        channels: input channels ``C``; must be divisible by ``norm_groups`` (and ``conv_groups``).
        kernel_size: odd 1D kernel size (paper ELA-B: 7).
        conv_groups: groups of the 1D conv; ``None`` = ``channels`` (depthwise, paper ELA-T/B).
        norm_groups: GroupNorm groups (paper: 16).
        shared: one conv and norm for both strips (paper) or one per axis (timm).
        bias: bias in the 1D conv (paper: False).
        act_layer: activation after the norm (paper: none; timm: SiLU).
        gate_layer: gate on each strip's weights (sigmoid).
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 7,
        conv_groups: int | None = None,
        norm_groups: int = 16,
        shared: bool = True,
        bias: bool = False,
        act_layer: LayerType = None,
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_odd_kernel("kernel_size", kernel_size)
        check_positive_int("norm_groups", norm_groups)
        check_divisible("channels", channels, "norm_groups", norm_groups)
        conv_groups = channels if conv_groups is None else conv_groups
        check_positive_int("conv_groups", conv_groups)
        check_divisible("channels", channels, "conv_groups", conv_groups)
        n = 1 if shared else 2
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=conv_groups, bias=bias)
            for _ in range(n)
        )
        self.norms = nn.ModuleList(nn.GroupNorm(norm_groups, channels) for _ in range(n))
        self.act = create_act(act_layer)
        self.gate = MultiGate(gate_layer, combine="prod", kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        # index 0 encodes the H-strip, -1 the W-strip: the same module when shared
        a_h = self.act(self.norms[0](self.convs[0](mean_pool(x, 3, keepdim=False)))).unsqueeze(-1)  # (B, C, H, 1)
        a_w = self.act(self.norms[-1](self.convs[-1](mean_pool(x, 2, keepdim=False)))).unsqueeze(-2)  # (B, C, 1, W)
        return x * self.gate(a_h, a_w)
