"""S²-MLPv2's split attention over spatially shifted branches (``S2Attention`` in community YOLO configs).

- S²-MLPv2: Yu, Li, Xie, Xu & Li, "S²-MLPv2: Improved Spatial-Shift MLP Architecture for Vision", 2021,
  https://arxiv.org/abs/2108.01072. The spatial shift is S²-MLP's (Yu et al., "S²-MLP: Spatial-Shift MLP
  Architecture for Vision", WACV 2022, https://arxiv.org/abs/2106.07477, Algorithm 1). No official code.
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import check_positive_int, create_act
from attnyolo.attention.gate_kinds import GateModule
from attnyolo.registry import register


def _shift(x: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """Shift ``x`` by one along ``dim`` (``step=+1``: position i takes i-1); the edge keeps its own value.

    S²-MLP's Algorithm 1 assigns ``x[1:] = x[:-1]`` in place, so the first row is left unchanged.
    """
    n = x.shape[dim]
    if n == 1:
        return x
    if step > 0:
        return torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    return torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)


def spatial_shift(x: torch.Tensor, first_axis: int) -> torch.Tensor:
    """S²-MLP's shift of ``(B, C, H, W)``: channel quarters move +1/-1 along ``first_axis``, then along the other.

    ``first_axis=2`` is S²-MLPv2's spatial-shift-1 (quarters: +H, -H, +W, -W); ``first_axis=3`` its
    spatial-shift-2 (+W, -W, +H, -H). Quarters are ``[0, c/4), [c/4, c/2), [c/2, 3c/4), [3c/4, c)`` with
    integer division, as the paper's pseudo-code.
    """
    c = x.shape[1]
    second_axis = 5 - first_axis
    bounds = [0, c // 4, c // 2, c * 3 // 4, c]
    moves = [(first_axis, 1), (first_axis, -1), (second_axis, 1), (second_axis, -1)]
    parts = [_shift(x[:, bounds[q] : bounds[q + 1]], axis, step) for q, (axis, step) in enumerate(moves)]
    return torch.cat(parts, 1)


class _BranchSoftmax(GateModule):
    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K, C) -> (B, K, C): softmax over the K branches."""
        return logits.softmax(dim=1)


@register(
    "s2",
    category="branch",
    paper="S²-MLPv2: Improved Spatial-Shift MLP Architecture for Vision",
    year=2021,
    url="https://arxiv.org/abs/2108.01072",
    reference="paper Eq. (split attention) and S²-MLP Algorithm 1, restated loop by loop in tests",
    notes="The attention part of the S²-MLPv2 block as community YAMLs use it (no LayerNorm, no residual: the "
    "output replaces the input). Any channel count (External-Attention-pytorch's S2Attention hard-codes 512 "
    "channels in its SplitAttention); the shifts are computed out of place (Algorithm 1 assigns slices in "
    "place); 1x1 convs stand for the channel-mixing MLPs (same weights).",
)
class S2Attention(nn.Module):
    """S²-MLPv2 split attention: expand to 3 branches, shift two of them, re-weight the branches by softmax.

    ``[X1, X2, X3] = MLP1(x)`` (C -> 3C); ``X1 <- shift1(X1)``, ``X2 <- shift2(X2)``; the split attention
    ``a = sum_k sum_n X_k[n]`` (a sum over the branches and positions), ``a_hat = GELU(a W1) W2`` (no bias,
    ``C -> C -> 3C``), ``a_bar`` = softmax over the 3 branches per channel, ``out = sum_k a_bar_k * X_k``;
    then ``MLP2`` (C -> C).

    Args:
        channels: input channels C.
        act_layer: activation of the split attention's MLP (paper: GELU).
    """

    branches = 3

    def __init__(self, channels: int, *, act_layer: str = "gelu"):
        super().__init__()
        check_positive_int("channels", channels)
        self.mlp1 = nn.Conv2d(channels, channels * self.branches, 1)
        self.attn_fc1 = nn.Linear(channels, channels, bias=False)
        self.act = create_act(act_layer)
        self.attn_fc2 = nn.Linear(channels, channels * self.branches, bias=False)
        self.gate = _BranchSoftmax(kind="branch")
        self.mlp2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c = x.shape[:2]
        x1, x2, x3 = self.mlp1(x).chunk(self.branches, dim=1)
        branches = torch.stack([spatial_shift(x1, 2), spatial_shift(x2, 3), x3], dim=1)  # (B, 3, C, H, W)
        acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        a = branches.sum((1, 3, 4), dtype=acc).to(x.dtype)  # a sum over H*W positions overflows fp16
        weights = self.gate(self.attn_fc2(self.act(self.attn_fc1(a))).reshape(b, self.branches, c))
        out = (branches * weights[..., None, None]).sum(1)
        return self.mlp2(out)
