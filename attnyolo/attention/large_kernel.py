"""Large-kernel attention built from depth-wise strip convolutions: the attention map is a convolution of ``x``.

- LSKA: Lau, Po & Rehman, "Large Separable Kernel Attention: Rethinking the Large Kernel Attention Design in
  CNN", Expert Systems with Applications 2024, https://arxiv.org/abs/2309.01439 (official code:
  https://github.com/StevenLauHKHK/Large-Separable-Kernel-Attention).
- MSCA: Guo, Lu, Hou, Liu, Cheng & Hu, "SegNeXt: Rethinking Convolutional Attention Design for Semantic
  Segmentation", NeurIPS 2022, https://arxiv.org/abs/2209.08575 (official code:
  https://github.com/Visual-Attention-Network/SegNeXt, ``mscan.py``).
- CAA: Cai, Lai, Wang, Wang, Zuo & Zhou, "Poly Kernel Inception Network for Remote Sensing Detection",
  CVPR 2024, https://arxiv.org/abs/2403.06258 (official code:
  https://github.com/NUST-Machine-Intelligence-Laboratory/PKINet).

LSKA and MSCA multiply ``x`` by an un-squashed attention map (no sigmoid, as in VAN's LKA); the ``gate`` of
those modules is the identity, so a hook on it still sees the map that multiplies ``x``.
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import (
    Gate,
    LayerType,
    SafeBatchNorm2d,
    check_odd_kernel,
    check_positive_int,
    create_act,
)
from attnyolo.registry import register


def _strip_pair(channels: int, length: int, dilation: int = 1) -> tuple[nn.Conv2d, nn.Conv2d]:
    """Depth-wise ``1 x length`` then ``length x 1`` convolutions (with bias) that keep the size."""
    pad = (length - 1) * dilation // 2
    horizontal = nn.Conv2d(channels, channels, (1, length), padding=(0, pad), dilation=dilation, groups=channels)
    vertical = nn.Conv2d(channels, channels, (length, 1), padding=(pad, 0), dilation=dilation, groups=channels)
    return horizontal, vertical


# LSKA's decomposition of a k x k kernel, from the official code: (local strip length, dilated strip length,
# dilation). The receptive field of the pair is about k along each axis.
LSKA_KERNELS: dict[int, tuple[int, int, int]] = {
    7: (3, 3, 2),
    11: (3, 5, 2),
    23: (5, 7, 3),
    35: (5, 11, 3),
    41: (5, 13, 3),
    53: (5, 17, 3),
}


@register(
    "lska",
    category="spatial",
    paper="Large Separable Kernel Attention: Rethinking the Large Kernel Attention Design in CNN",
    year=2024,
    url="https://arxiv.org/abs/2309.01439",
    constraints="k_size one of 7, 11, 23, 35, 41, 53 (the paper's decompositions)",
    reference="official code (LSKA class), restated in tests/attention/test_conv_attention.py",
    notes="The official LSKA class as is (the VAN-LSKA block wraps it in 1x1 convs and a residual). The "
    "official code has no default k_size; 7 here (the smallest the paper evaluates).",
)
class LargeSeparableKernelAttention(nn.Module):
    """LSKA: ``y = x ⊙ conv1x1(DW-D_{k/d}^v(DW-D_{k/d}^h(DW_{2d-1}^v(DW_{2d-1}^h(x)))))``.

    LKA's ``(2d-1) x (2d-1)`` depth-wise conv and ``k/d x k/d`` dilated depth-wise conv are each split into a
    horizontal and a vertical strip, so the cost grows linearly (not quadratically) with the kernel size.

    Args:
        channels: input channels C.
        k_size: the large kernel emulated (7, 11, 23, 35, 41 or 53, as in the paper's tables).

    Differs from the official code: nothing (parameter names ``conv0h``, ``conv0v``, ``conv_spatial_h``,
    ``conv_spatial_v``, ``conv1`` as there). The attention map is not squashed (no sigmoid), as in the paper.
    """

    def __init__(self, channels: int, *, k_size: int = 7):
        super().__init__()
        check_positive_int("channels", channels)
        if k_size not in LSKA_KERNELS:
            raise ValueError(f"k_size must be one of {sorted(LSKA_KERNELS)} (the paper's kernels), got {k_size!r}")
        local, dilated, dilation = LSKA_KERNELS[k_size]
        self.conv0h, self.conv0v = _strip_pair(channels, local)
        self.conv_spatial_h, self.conv_spatial_v = _strip_pair(channels, dilated, dilation)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.gate = Gate("identity", kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        attn = self.conv_spatial_v(self.conv_spatial_h(self.conv0v(self.conv0h(x))))
        return x * self.gate(self.conv1(attn))


@register(
    "msca",
    category="spatial",
    paper="SegNeXt: Rethinking Convolutional Attention Design for Semantic Segmentation",
    year=2022,
    url="https://arxiv.org/abs/2209.08575",
    reference="official code (mscan.py AttentionModule), restated in tests/attention/test_conv_attention.py",
    notes="The multi-scale convolutional attention itself (official AttentionModule); MSCAN's SpatialAttention "
    "wraps it in 1x1 convs, GELU and a residual, which belong to the block.",
)
class MultiScaleConvAttention(nn.Module):
    """SegNeXt MSCA: ``Att = conv1x1(Σ_{i=0..3} Scale_i(DW-Conv5x5(x)))``, ``y = Att ⊙ x`` (paper Eq. 1-2).

    ``Scale_0`` is the identity; ``Scale_1..3`` are depth-wise strip pairs ``1 x k`` then ``k x 1`` with
    ``k = 7, 11, 21``.

    Args:
        channels: input channels C.
        kernel_sizes: strip lengths of the three branches (paper: 7, 11, 21; odd).

    Differs from the official code: nothing at the defaults (parameter names ``conv0``, ``conv{i}_1``,
    ``conv{i}_2``, ``conv3`` as there); the branch lengths are a parameter.
    """

    def __init__(self, channels: int, *, kernel_sizes: tuple[int, int, int] = (7, 11, 21)):
        super().__init__()
        check_positive_int("channels", channels)
        kernel_sizes = tuple(kernel_sizes)
        if len(kernel_sizes) != 3:
            raise ValueError(f"kernel_sizes must hold three strip lengths, got {kernel_sizes!r}")
        for k in kernel_sizes:
            check_odd_kernel("kernel_sizes", k)
        self.conv0 = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.conv0_1, self.conv0_2 = _strip_pair(channels, kernel_sizes[0])
        self.conv1_1, self.conv1_2 = _strip_pair(channels, kernel_sizes[1])
        self.conv2_1, self.conv2_2 = _strip_pair(channels, kernel_sizes[2])
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.gate = Gate("identity", kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        base = self.conv0(x)
        attn = base + self.conv0_2(self.conv0_1(base)) + self.conv1_2(self.conv1_1(base))
        attn = attn + self.conv2_2(self.conv2_1(base))
        return x * self.gate(self.conv3(attn))


class _ConvBNAct(nn.Sequential):
    """mmcv's ``ConvModule`` with a norm: conv without bias, BatchNorm, activation (same state-dict keys)."""

    def __init__(self, channels: int, act_layer: LayerType):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = SafeBatchNorm2d(channels, eps=1e-3, momentum=0.03)  # PKINet's norm_cfg
        self.act = create_act(act_layer)


@register(
    "caa",
    category="spatial",
    paper="Poly Kernel Inception Network for Remote Sensing Detection",
    year=2024,
    url="https://arxiv.org/abs/2403.06258",
    reference="official code (pkinet.py CAA), restated in tests/attention/test_conv_attention.py",
    notes="The official CAA returns only the attention factor, which a PKI block multiplies into its "
    "features; as a stand-alone module it gates its own input: y = x * CAA(x).",
)
class ContextAnchorAttention(nn.Module):
    """PKINet context anchor attention: pooled context through 1x1 and strip convs gates the input.

    ``A = sigmoid(Conv1x1(DW_{k×1}(DW_{1×k}(Conv1x1(AvgPool7(x))))))``, ``y = x ⊙ A``.

    The 7x7 average pool (stride 1, zero padding counted, as ``nn.AvgPool2d(7, 1, 3)``) gathers local
    context; the two 1x1 convs are conv + BatchNorm (momentum 0.03, eps 1e-3) + SiLU, the strips are
    depth-wise with bias and no norm, as in the official code.

    Args:
        channels: input channels C.
        h_kernel_size: horizontal strip length (paper: 11, odd).
        v_kernel_size: vertical strip length (paper: 11, odd).
        act_layer: activation after each BatchNorm (paper: SiLU).
        gate_layer: gate (paper: sigmoid).

    Differs from the official code: the module multiplies its input by the factor (the official class
    returns the factor alone, for the PKI block to apply). State-dict keys follow mmcv's ``ConvModule``
    (``conv1.conv``, ``conv1.bn``, ``h_conv.conv``...), without the ``.conv`` level for the strips.
    """

    def __init__(
        self,
        channels: int,
        *,
        h_kernel_size: int = 11,
        v_kernel_size: int = 11,
        act_layer: LayerType = "silu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_odd_kernel("h_kernel_size", h_kernel_size)
        check_odd_kernel("v_kernel_size", v_kernel_size)
        self.avg_pool = nn.AvgPool2d(7, 1, 3)
        self.conv1 = _ConvBNAct(channels, act_layer)
        c = channels
        self.h_conv = nn.Conv2d(c, c, (1, h_kernel_size), padding=(0, h_kernel_size // 2), groups=c)
        self.v_conv = nn.Conv2d(c, c, (v_kernel_size, 1), padding=(v_kernel_size // 2, 0), groups=c)
        self.conv2 = _ConvBNAct(channels, act_layer)
        self.gate = Gate(gate_layer, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x * self.gate(self.conv2(self.v_conv(self.h_conv(self.conv1(self.avg_pool(x))))))
