"""Channel attention that keeps some spatial detail: local pooled descriptors (MLCA), or a channel prior
followed by multi-scale strip convolutions (CPCA).

- MLCA: Wan, Lu, Shen, Xu, Lang & Ren, "Mixed local channel attention for object detection", Engineering
  Applications of Artificial Intelligence 123 (2023) 106442, https://doi.org/10.1016/j.engappai.2023.106442
  (official code: https://github.com/wandahangFY/MLCA).
- CPCA: Huang, Chen, Xu, Wang, Wang & Zhou, "Channel prior convolutional attention for medical image
  segmentation", Computers in Biology and Medicine 178 (2024) 108784, https://arxiv.org/abs/2306.05196
  (official code: https://github.com/Cuthbert-Huang/CPCANet).
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import (
    Gate,
    LayerType,
    MultiGate,
    check_positive,
    check_positive_int,
    check_unit_interval,
    create_act,
    global_max_pool,
    mean_pool,
)
from attnyolo.attention._sliding import resize_mean
from attnyolo.attention.channel import eca_kernel_size
from attnyolo.attention.gate_kinds import GateModule
from attnyolo.registry import register


class _MixedUnpoolGate(GateModule):
    """MLCA's weights: ``unpool((1 - w) sigmoid(global) + w sigmoid(local))`` back to the input size."""

    def __init__(self, local_weight: float, *, kind: str):
        super().__init__(kind=kind)
        self.local_weight = local_weight

    def forward(self, local_logits: torch.Tensor, global_logits: torch.Tensor, height: int, width: int):
        """(B, C, s, s) and (B, C, 1, 1) logits -> (B, C, height, width)."""
        mixed = global_logits.sigmoid() * (1 - self.local_weight) + local_logits.sigmoid() * self.local_weight
        return resize_mean(mixed, height, width)


@register(
    "mlca",
    category="channel_spatial",
    paper="Mixed local channel attention for object detection",
    year=2023,
    url="https://doi.org/10.1016/j.engappai.2023.106442",
    reference="official code (MLCA class), restated in tests/attention/test_conv_attention.py (batch 1)",
    notes="The official global branch reshapes the (B, 1, C) conv output to (C, B, 1) before pooling it to "
    "local_size, which averages the global weights over the batch when B > 1; here each image keeps its own "
    "global weights (identical at B = 1). Adaptive pooling is done by exact pooling matrices (ONNX-exportable).",
)
class MixedLocalChannelAttention(nn.Module):
    """MLCA: ECA-style channel attention on a local ``s x s`` grid and globally, mixed and un-pooled.

    ``y = x ⊙ UNAP((1-λ) σ(conv_g(g)) + λ σ(conv_l(l)))``: 1-D convolutions over a local (``s x s``) and a
    global channel descriptor, mixed and un-pooled back to the feature size.

    ``l = AdaptiveAvgPool_s(x)`` (``s = local_size``), ``g = mean(l)``. The local descriptor is laid out
    position-major, ``(s², C)`` flattened to one sequence, so the k-wide convolution runs along the channels
    of each local cell (and across the seam between consecutive cells, as in the official code). ``k`` is
    ECA's adaptive kernel size of C. UNAP is adaptive average pooling back to ``H x W``.

    Args:
        channels: input channels C.
        local_size: side s of the local pooling grid (paper: 5).
        gamma: gamma of ECA's adaptive kernel size (paper: 2).
        b: b of ECA's adaptive kernel size (paper: 1).
        local_weight: λ, the weight of the local branch (paper: 0.5).

    Differs from the official code: per-image global weights for batches > 1 (see the spec's notes).
    """

    def __init__(self, channels: int, *, local_size: int = 5, gamma: float = 2, b: float = 1, local_weight=0.5):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("local_size", local_size)
        check_positive("gamma", gamma)
        check_unit_interval("local_weight", local_weight)
        k = eca_kernel_size(channels, gamma, b)
        self.local_size = local_size
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.conv_local = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.gate = _MixedUnpoolGate(local_weight, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        s = self.local_size
        local = resize_mean(x, s, s)  # (B, C, s, s)
        global_ = mean_pool(local, (2, 3))  # (B, C, 1, 1)
        seq = local.flatten(2).transpose(1, 2).reshape(b, 1, s * s * c)  # position-major
        local_logits = self.conv_local(seq).reshape(b, s * s, c).transpose(1, 2).reshape(b, c, s, s)
        global_logits = self.conv(global_.reshape(b, 1, c)).reshape(b, c, 1, 1)
        return x * self.gate(local_logits, global_logits, h, w)


@register(
    "cpca",
    category="channel_spatial",
    paper="Channel prior convolutional attention for medical image segmentation",
    year=2024,
    url="https://arxiv.org/abs/2306.05196",
    reference="official code (CPCABlock / RepBlock), restated in tests/attention/test_conv_attention.py",
    notes="As the official block, one 1x1 conv (`conv`) is applied three times: input projection, spatial "
    "mixing and output projection. Hidden width max(1, C * rd_ratio) (the official C // 4 is 0 for C < 4).",
)
class ChannelPriorConvAttention(nn.Module):
    """CPCA: a channel prior, then spatial attention from multi-scale depth-wise strip convs.

    ``F_c = CA(F) ⊙ F``, ``y = Conv1x1(Conv1x1(Σ_i Branch_i(DwConv5x5(F_c))) ⊙ F_c)``.

    ``CA(F) = σ(MLP(AvgPool(F))) + σ(MLP(MaxPool(F)))`` (shared MLP with biases, ReLU); ``Branch_0`` is the
    identity, ``Branch_1..3`` depth-wise strip pairs ``1 x k`` then ``k x 1`` with k = 7, 11, 21. As in the
    official ``RepBlock``, the input first goes through ``GELU(Conv1x1(x))`` and the same 1x1 conv serves
    for the spatial mixing and the output.

    Args:
        channels: input channels C.
        rd_ratio: width of the channel-attention MLP as a fraction of C (paper: 1/4).
        act_layer: activation after the input projection (official code: GELU).

    Differs from the official code: nothing for C >= 4 (parameter names ``conv``, ``ca.fc1``, ``ca.fc2``,
    ``dconv5_5``, ``dconv1_7``, ``dconv7_1``... as there). The channel weights pass through ``channel_gate``,
    the spatial map (not squashed, as in the paper) through ``gate``.
    """

    def __init__(self, channels: int, *, rd_ratio: float = 1 / 4, act_layer: LayerType = "gelu"):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive("rd_ratio", rd_ratio)
        hidden = max(1, int(channels * rd_ratio + 1e-6))  # floor like the official C // 4
        self.conv = nn.Conv2d(channels, channels, 1)
        self.act = create_act(act_layer)
        self.ca = nn.Module()
        self.ca.fc1 = nn.Conv2d(channels, hidden, 1)
        self.ca.fc2 = nn.Conv2d(hidden, channels, 1)
        self.channel_gate = MultiGate("sigmoid", combine="sum", kind="channel")
        c = channels
        self.dconv5_5 = nn.Conv2d(c, c, 5, padding=2, groups=c)
        for k in (7, 11, 21):
            setattr(self, f"dconv1_{k}", nn.Conv2d(c, c, (1, k), padding=(0, k // 2), groups=c))
            setattr(self, f"dconv{k}_1", nn.Conv2d(c, c, (k, 1), padding=(k // 2, 0), groups=c))
        self.gate = Gate("identity", kind="channel_spatial")

    def _mlp(self, v: torch.Tensor) -> torch.Tensor:
        return self.ca.fc2(torch.relu(self.ca.fc1(v)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = self.act(self.conv(x))
        x = x * self.channel_gate(self._mlp(mean_pool(x, (2, 3))), self._mlp(global_max_pool(x)))
        base = self.dconv5_5(x)
        attn = base + self.dconv7_1(self.dconv1_7(base)) + self.dconv11_1(self.dconv1_11(base))
        attn = attn + self.dconv21_1(self.dconv1_21(base))
        return self.conv(self.gate(self.conv(attn)) * x)
