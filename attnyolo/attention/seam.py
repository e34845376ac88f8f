"""SEAM, the separated and enhancement attention module of YOLO-FaceV2 (occlusion-aware face detection).

- SEAM: Yu, Qiu, Hu, Ma & Zhang, "YOLO-FaceV2: A Scale and Occlusion Aware Face Detector", 2022,
  https://arxiv.org/abs/2208.02019 (official code: https://github.com/Krasjet-Yu/YOLO-FaceV2, ``SEAM`` in
  ``models/common.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import (
    Gate,
    LayerType,
    SafeBatchNorm2d,
    check_positive_int,
    create_act,
    mean_pool,
    reduced_channels,
)
from attnyolo.registry import register


class _ExpSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any shape -> the same shape: ``exp(sigmoid(x))``."""
        return torch.exp(torch.sigmoid(x))


class _DepthwiseSeparableBlock(nn.Module):
    """``BN(GELU(pw(x + BN(GELU(dw(x))))))``: SEAM's depthwise (residual) then pointwise conv, both conv-GELU-BN."""

    def __init__(self, channels: int):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.dw_act = nn.GELU()
        self.dw_bn = SafeBatchNorm2d(channels)
        self.pw = nn.Conv2d(channels, channels, 1)
        self.pw_act = nn.GELU()
        self.pw_bn = SafeBatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = x + self.dw_bn(self.dw_act(self.dw(x)))
        return self.pw_bn(self.pw_act(self.pw(x)))


@register(
    "seam",
    category="channel",
    paper="YOLO-FaceV2: A Scale and Occlusion Aware Face Detector",
    year=2022,
    url="https://arxiv.org/abs/2208.02019",
    reference="official Krasjet-Yu/YOLO-FaceV2 SEAM (restated in tests)",
    notes="As the official SEAM class (depth n=1, reduction 16, convs with bias, FC layers without). The "
    "released yolov5s_v2_SEAM.yaml passes reduction 8; pass rd_ratio=1/8 for it. Hidden width C/r is at "
    "least 1 (the official code builds a zero-width layer for C < r).",
)
class SEAM(nn.Module):
    """SEAM: ``y = x * exp(sigmoid(FC(GAP(DCovN(x)))))``, DCovN = ``depth`` depthwise-separable blocks.

    The depthwise-separable convolutions (a residual depthwise 3x3 conv, then a pointwise conv, each followed by
    GELU and BatchNorm) learn per-channel and cross-channel spatial context; their global average goes
    through SE's two FC layers (no bias, ReLU, sigmoid) and the exponential turns the ``[0, 1]`` weights into
    ``[1, e]``, so occluded regions are emphasised without suppressing the rest.

    Args:
        channels: input channels C.
        depth: number of depthwise-separable blocks n (paper: 1).
        rd_ratio: 1/r of the FC bottleneck (official class default r = 16).
        rd_channels: hidden width; overrides ``rd_ratio``.
        rd_divisor: round the hidden width to a multiple of this (1: the paper's C/r, at least 1).
        act_layer: activation between the FC layers (ReLU).
        gate_layer: gate (``"exp_sigmoid"``: ``exp(sigmoid(.))`` as the paper, weights in ``(1, e)``).
    """

    def __init__(
        self,
        channels: int,
        *,
        depth: int = 1,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "exp_sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("depth", depth)
        hidden = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.blocks = nn.Sequential(*(_DepthwiseSeparableBlock(channels) for _ in range(depth)))
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.act = create_act(act_layer)
        self.fc2 = nn.Linear(hidden, channels, bias=False)
        # the paper's exp(sigmoid(.)) by name (not one of the shared activations); any other gate as usual
        self.gate = Gate(_ExpSigmoid if gate_layer == "exp_sigmoid" else gate_layer, kind="channel")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c = x.shape[:2]
        z = mean_pool(self.blocks(x), (2, 3)).reshape(b, c)
        return x * self.gate(self.fc2(self.act(self.fc1(z)))).reshape(b, c, 1, 1)
