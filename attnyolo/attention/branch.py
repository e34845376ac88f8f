"""Branch attention: several convolution branches, mixed per channel by softmax weights over the branches.

Papers (equation numbers refer to them):

- SK: Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019. https://arxiv.org/abs/1903.06586
- Split attention: Zhang et al., "ResNeSt: Split-Attention Networks", 2020 (CVPR Workshops 2022).
  https://arxiv.org/abs/2004.08955

Both modules are convolutions with attention, not gates on an existing feature map: they replace ``x``
by a re-weighted sum of new branch outputs (with their own 3x3 convolutions) of the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from attnyolo.attention._base import (
    Gate,
    LayerType,
    SafeBatchNorm2d,
    check_divisible,
    check_odd_kernel,
    check_positive_int,
    create_act,
    make_divisible,
    mean_pool,
    reduced_channels,
)
from attnyolo.registry import register


class _ConvBnAct(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, groups: int, act_layer: LayerType):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=pad, dilation=dilation, groups=groups, bias=False)
        self.bn = SafeBatchNorm2d(c_out)
        self.act = create_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        return self.act(self.bn(self.conv(x)))


@register(
    "sk",
    category="branch",
    paper="Selective Kernel Networks",
    year=2019,
    url="https://arxiv.org/abs/1903.06586",
    constraints="channels divisible by groups (default 32); with split_input=True, channels divisible by "
    "len(kernel_sizes) * groups",
    reference="timm:SelectiveKernel",
    notes="BatchNorms fall back to running statistics where a channel has one value in training (batch 1 "
    "after the global pooling), so batch 1 trains; timm's SelectiveKernel raises there.",
)
class SelectiveKernel(nn.Module):
    """Selective Kernel convolution: split into 3x3 and 5x5 branches, fuse, select by softmax (Li et al., Eq. 1-6).

    Split: branch m is ``ReLU(BN(grouped conv_k_m(x)))``; the 5x5 kernel is a 3x3 with dilation 2, as
    the paper's implementation note suggests. Fuse: ``s = GAP(U_1 + U_2)``, ``z = ReLU(BN(W s))`` with
    ``d = max(C / r, L)`` (Eq. 3-4). Select: ``V = sum_m softmax_m(A_m z) * U_m`` (Eq. 5-6).
    Stride 1 and ``C`` output channels, so the module preserves the shape of ``x``.

    Args:
        channels: input (and output) channels C.
        kernel_sizes: one branch per (odd) kernel size (paper: 3 and 5).
        groups: groups of each branch convolution (paper, SKNet-50: G = 32).
        rd_ratio: 1/r of the fuse layer (paper: r = 16).
        rd_channels: hidden width d; overrides ``rd_ratio`` and ``min_rd_channels``.
        rd_divisor: C/r is rounded to a multiple of this before the ``L`` floor (1: the paper's C/r).
        min_rd_channels: L, the floor of d (paper: 32).
        keep_3x3: make a k x k kernel a 3x3 with dilation (k - 1) / 2 (paper's note; default).
        split_input: give each branch C / M input channels instead of all of them (timm's variant).
        act_layer: activation of the branches and of the fuse layer (paper: ReLU).

    Batch 1 in training: after global pooling each channel of the fuse layer's BatchNorm holds one value
    per sample, so at batch 1 ``nn.BatchNorm2d`` raises (timm's ``SelectiveKernel`` does). Here every
    BatchNorm is :class:`SafeBatchNorm2d`, which in that case only normalises with its running
    statistics (as in eval) and leaves them unchanged; with two or more values it is ``nn.BatchNorm2d``.

    Differs from timm's ``SelectiveKernel``: defaults follow the paper (timm: groups 1, input split,
    ``d = make_divisible(C / 16, 8)`` with no floor of 32); with ``groups=1, split_input=True`` and
    timm's ``rd_channels``, outputs equal timm's (eval, and training at batch >= 2) with the same weights.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_sizes: Sequence[int] = (3, 5),
        groups: int = 32,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        min_rd_channels: int = 32,
        keep_3x3: bool = True,
        split_input: bool = False,
        act_layer: LayerType = "relu",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("groups", groups)
        check_positive_int("min_rd_channels", min_rd_channels)
        kernel_sizes = [kernel_sizes] if isinstance(kernel_sizes, int) else list(kernel_sizes)
        if len(kernel_sizes) < 2:
            raise ValueError(f"kernel_sizes needs at least two kernels to select between, got {kernel_sizes!r}")
        for k in kernel_sizes:
            check_odd_kernel("kernel_sizes", k)
            if keep_3x3 and k < 3:
                raise ValueError(f"kernel_sizes must be >= 3 with keep_3x3=True, got {kernel_sizes!r}")
        self.num_paths = len(kernel_sizes)
        self.split_input = bool(split_input)
        c_in = channels
        if self.split_input:
            check_divisible("channels", channels, "len(kernel_sizes)", self.num_paths)
            c_in = channels // self.num_paths
            check_divisible("channels", channels, "len(kernel_sizes) * groups", self.num_paths * groups)
        check_divisible("channels", channels, "groups", groups)
        # (kernel, dilation) per branch; keep_3x3 turns k x k into a 3x3 dilated to the same extent
        shapes = [(3, (k - 1) // 2) if keep_3x3 else (k, 1) for k in kernel_sizes]
        self.paths = nn.ModuleList(_ConvBnAct(c_in, channels, k, d, groups, act_layer) for k, d in shapes)
        if rd_channels is None:
            hidden = max(reduced_channels(channels, rd_ratio, None, rd_divisor), min_rd_channels)
        else:
            hidden = reduced_channels(channels, rd_ratio, rd_channels)
        self.fc_reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn = SafeBatchNorm2d(hidden)
        self.act = create_act(act_layer)
        self.fc_select = nn.Conv2d(hidden, channels * self.num_paths, 1, bias=False)
        self.gate = Gate(partial(nn.Softmax, dim=1), kind="branch")  # softmax across branches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c = x.shape[:2]
        inputs = x.chunk(self.num_paths, 1) if self.split_input else [x] * self.num_paths
        u = torch.stack([path(xi) for path, xi in zip(self.paths, inputs, strict=True)], 1)  # split, (B, M, C, H, W)
        s = mean_pool(u.sum(1), (2, 3))  # fuse, Eq. 1-2
        z = self.act(self.bn(self.fc_reduce(s)))  # Eq. 3
        a = self.gate(self.fc_select(z).reshape(b, self.num_paths, c, 1, 1))  # select, Eq. 5
        return (u * a).sum(1)  # Eq. 6


class _RadixSoftmax(nn.Module):
    """Softmax over the radix splits within each cardinal group; sigmoid when radix is 1 (ResNeSt's rSoftMax)."""

    def __init__(self, radix: int, groups: int):
        super().__init__()
        self.radix, self.groups = radix, groups

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, R*C, 1, 1) -> (B, R, C, 1, 1): softmax over the R splits (sigmoid if R = 1)."""
        b = logits.shape[0]
        if self.radix == 1:
            return torch.sigmoid(logits).reshape(b, 1, -1, 1, 1)
        # fc2's outputs are ordered (group, radix, channel): weights come out as (radix, group * channel).
        w = logits.reshape(b, self.groups, self.radix, -1).transpose(1, 2).softmax(1)
        return w.reshape(b, self.radix, -1, 1, 1)


@register(
    "splat",
    category="branch",
    paper="ResNeSt: Split-Attention Networks",
    year=2020,
    url="https://arxiv.org/abs/2004.08955",
    constraints="channels divisible by radix * groups (default 2)",
    reference="timm:SplitAttn",
    notes="BatchNorm as in ResNeSt (timm's SplitAttn defaults to none); BatchNorms fall back to running "
    "statistics where a channel has one value in training, so batch 1 trains.",
)
class SplitAttention(nn.Module):
    """Split attention (ResNeSt): radix branches from one grouped conv, mixed by an r-softmax (Zhang et al., Sec. 3).

    ``U = ReLU(BN(conv_kxk(x)))`` with ``radix * groups`` groups gives ``radix`` splits ``U_r`` of C
    channels; ``s = GAP(sum_r U_r)``; ``a = rSoftmax(W2 ReLU(BN(W1 s)))`` over the splits within each
    cardinal group; ``V = sum_r a_r * U_r``. Stride 1 and C output channels (shape-preserving).

    Args:
        channels: input (and output) channels C.
        radix: splits per cardinal group R (paper: 2); radix 1 gates with a sigmoid, like SE.
        groups: cardinality K (paper's ResNeSt-50: 1).
        kernel_size: odd kernel of the split convolution (paper: 3).
        rd_ratio: hidden width of the attention FC as a fraction of ``C * radix`` (ResNeSt/timm: 1/4).
        rd_channels: hidden width; overrides ``rd_ratio`` and ``min_rd_channels``.
        rd_divisor: hidden width is a multiple of this (timm: 8).
        min_rd_channels: floor of the hidden width (ResNeSt/timm: 32).
        use_bn: BatchNorm after the split conv and the first FC (ResNeSt: yes; timm's default: no).
        act_layer: activation (paper: ReLU).

    Batch 1 in training: the BatchNorm after the first FC sees one value per channel per sample; it is
    a :class:`SafeBatchNorm2d`, which at batch 1 in training normalises with its running statistics
    instead of raising (ResNeSt with BN, and timm's ``SplitAttn`` with a BatchNorm ``norm_layer``, raise).

    Differs from timm's ``SplitAttn``: BatchNorm on by default (timm: ``norm_layer=None``); ``rd_channels``
    is the hidden width itself (timm multiplies it by radix); no stride, dilation or drop options.
    Hidden width ``make_divisible(C * radix * rd_ratio, rd_divisor, min_value=min_rd_channels)`` as timm
    (the official code's ``max(C * radix // 4, 32)`` for multiples of 8).
    """

    def __init__(
        self,
        channels: int,
        *,
        radix: int = 2,
        groups: int = 1,
        kernel_size: int = 3,
        rd_ratio: float = 0.25,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        min_rd_channels: int = 32,
        use_bn: bool = True,
        act_layer: LayerType = "relu",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("radix", radix)
        check_positive_int("groups", groups)
        check_odd_kernel("kernel_size", kernel_size)
        check_positive_int("min_rd_channels", min_rd_channels)
        check_divisible("channels", channels, "radix * groups", radix * groups)
        if rd_channels is None:
            reduced_channels(channels, rd_ratio, None, rd_divisor)  # validates rd_ratio and rd_divisor
            hidden = make_divisible(channels * radix * rd_ratio, rd_divisor, min_value=min_rd_channels)
        else:
            hidden = reduced_channels(channels, rd_ratio, rd_channels)
        check_divisible("rd_channels", hidden, "groups", groups)
        self.radix = radix
        mid = channels * radix
        self.conv = nn.Conv2d(channels, mid, kernel_size, padding=kernel_size // 2, groups=groups * radix, bias=False)
        self.bn0 = SafeBatchNorm2d(mid) if use_bn else nn.Identity()
        self.act0 = create_act(act_layer)
        self.fc1 = nn.Conv2d(channels, hidden, 1, groups=groups)
        self.bn1 = SafeBatchNorm2d(hidden) if use_bn else nn.Identity()
        self.act1 = create_act(act_layer)
        self.fc2 = nn.Conv2d(hidden, mid, 1, groups=groups)
        self.gate = Gate(partial(_RadixSoftmax, radix, groups), kind="branch")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        u = self.act0(self.bn0(self.conv(x))).reshape(b, self.radix, c, h, w)  # radix splits U_r
        s = mean_pool(u.sum(1), (2, 3))
        a = self.gate(self.fc2(self.act1(self.bn1(self.fc1(s)))))  # (B, R, C, 1, 1)
        return (u * a).sum(1)
