"""Group-wise attention: the channels are split into groups that are attended to independently.

- Spatial Group-wise Enhance (SGE): Li, Hu & Yang, "Spatial Group-wise Enhance: Improving Semantic Feature
  Learning in Convolutional Networks", 2019, https://arxiv.org/abs/1905.09646
  (official code: https://github.com/implus/PytorchInsight).
- Shuffle Attention (SA): Zhang & Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
  ICASSP 2021, https://arxiv.org/abs/2102.00240 (official code: https://github.com/wofmanaf/SA-Net).
- Efficient Multi-Scale Attention (EMA): Ouyang et al., "Efficient Multi-Scale Attention Module with
  Cross-Spatial Learning", ICASSP 2023, https://arxiv.org/abs/2305.13563
  (official code: https://github.com/YOLOonMe/EMA-attention-module).

All three reshape ``(B, C, H, W)`` to ``(B*G, C/G, H, W)``, so ``channels`` must be divisible by the group
count: a ``ValueError`` naming ``channels`` says so (e.g. EMA's default 32 groups cannot run on a
16-channel layer; pass a smaller ``groups``).
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import Gate, LayerType, check_positive, check_positive_int
from attnyolo.registry import register


def _check_groups(channels: int, groups: int, per_group: int = 1) -> None:
    check_positive_int("channels", channels)
    check_positive_int("groups", groups)
    if channels % (groups * per_group):
        need = f"groups * {per_group} = {groups * per_group}" if per_group > 1 else f"groups={groups}"
        raise ValueError(f"channels={channels} must be divisible by {need}; pass a smaller `groups`")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: ``(B, g*n, H, W) -> (B, n*g, H, W)`` (channel ``i*n + j`` moves to ``j*g + i``)."""
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


@register(
    "sge",
    category="channel_spatial",
    paper="Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks",
    year=2019,
    url="https://arxiv.org/abs/1905.09646",
    constraints="channels divisible by groups (default 64)",
    notes=(
        "No installed reference (official: implus/PytorchInsight); tests re-state the equations by loops. "
        "Normalises the similarity map with the population std (1/m, the paper's equation); the official code "
        "uses torch.std (unbiased, 1/(m-1)), which is NaN for a 1x1 map. Init as the official code: "
        "gamma=0, beta=1, so the initial output is sigmoid(1) * x."
    ),
)
class SpatialGroupEnhance(nn.Module):
    """Spatial Group-wise Enhance: per group, ``a = gamma * norm(sum_c x * mean(x)) + beta``, ``y = x * sigmoid(a)``.

    In each of ``groups`` channel groups, the similarity of every position's feature vector with the group's
    mean vector (``c_i = g . x_i``) is normalised over the positions (zero mean, unit std), scaled and
    shifted by the group's ``gamma``/``beta`` and gated: 2 parameters per group.

    Differences: std over positions uses ``1/m`` (paper) where the official code uses the unbiased estimate
    (outputs differ by the factor ``sqrt(m/(m-1))`` inside the normalisation; the official code returns NaN
    on a 1x1 map, this one returns ``sigmoid(beta) * x``). Parameter names ``weight``, ``bias`` and their
    ``(1, G, 1, 1)`` shape match the official code, as does the init (``weight=0``, ``bias=1``).

    Args:
        channels: input channels ``C``, divisible by ``groups``.
        groups: number of groups ``G`` (paper: 64).
        eps: added to the std (official code: 1e-5).
        gate_layer: gate on the normalised similarity (sigmoid).
    """

    def __init__(self, channels: int, *, groups: int = 64, eps: float = 1e-5, gate_layer: LayerType = "sigmoid"):
        super().__init__()
        _check_groups(channels, groups)
        check_positive("eps", eps)
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.gate = Gate(gate_layer, kind="spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        xg = x.reshape(b, self.groups, c // self.groups, h, w)
        sim = (xg * xg.mean((3, 4), keepdim=True)).sum(2)  # (B, G, H, W): c_i = g . x_i
        mu = sim.mean((2, 3), keepdim=True)
        std = (sim - mu).square().mean((2, 3), keepdim=True).sqrt()
        a = self.weight * (sim - mu) / (std + self.eps) + self.bias
        return (xg * self.gate(a).unsqueeze(2)).reshape(b, c, h, w)


@register(
    "sa",
    category="channel_spatial",
    paper="SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
    year=2021,
    url="https://arxiv.org/abs/2102.00240",
    constraints="channels divisible by 2 * groups (default 128)",
    notes=(
        "No installed reference (official: wofmanaf/SA-Net); tests re-state the equations by loops. "
        "Keeps the official code's GroupNorm affine (redundant with W2/b2) so its checkpoints load: "
        "3C/G parameters per module (708 on ResNet-50); the abstract's '300' could not be reconciled with any "
        "count of the published structure. Init as the official code: W=0, b=1."
    ),
)
class ShuffleAttention(nn.Module):
    """Shuffle Attention: per group, half the channels get channel attention, half spatial attention; then shuffle.

    Each of ``groups`` sub-features ``(C/G channels)`` is split in two halves: ``x1 * sigmoid(W1 * GAP(x1) + b1)``
    (channel branch, paper Eq. 1-2) and ``x2 * sigmoid(W2 * GN(x2) + b2)`` (spatial branch, Eq. 3), with
    per-channel ``W``/``b`` of shape ``C/2G``. The halves are concatenated and a channel shuffle with 2 groups
    mixes information across sub-features.

    Differences: none from the official ``sa_layer`` (same parameter names ``cweight``, ``cbias``, ``sweight``,
    ``sbias``, ``gn``, same init, GroupNorm with its affine). Both branches' weights are computed in one
    ``gate`` call on ``(B, C, H, W)`` logits (the channel logits broadcast over H, W), before the shuffle.

    Args:
        channels: input channels ``C``, divisible by ``2 * groups``.
        groups: number of sub-features ``G`` (paper: 64).
        gate_layer: gate on both branches (sigmoid).
    """

    def __init__(self, channels: int, *, groups: int = 64, gate_layer: LayerType = "sigmoid"):
        super().__init__()
        _check_groups(channels, groups, per_group=2)
        self.groups = groups
        half = channels // (2 * groups)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)
        self.gate = Gate(gate_layer, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        x1, x2 = x.reshape(b * self.groups, c // self.groups, h, w).chunk(2, dim=1)
        s_ch = self.cweight * x1.mean((2, 3), keepdim=True) + self.cbias  # channel branch, Eq. 1-2
        s_sp = self.sweight * self.gn(x2) + self.sbias  # spatial branch, Eq. 3
        logits = torch.cat([s_ch.expand_as(x1), s_sp], dim=1).reshape(b, c, h, w)
        return channel_shuffle(x * self.gate(logits), 2)


@register(
    "ema",
    category="channel_spatial",
    paper="Efficient Multi-Scale Attention Module with Cross-Spatial Learning",
    year=2023,
    url="https://arxiv.org/abs/2305.13563",
    constraints="channels divisible by groups (default 32)",
    notes=(
        "No installed reference (official: YOLOonMe/EMA-attention-module); tests re-state the equations by loops. "
        "Same structure and parameter names as the official code; the final per-group map is gated in `gate`."
    ),
)
class EfficientMultiScaleAttention(nn.Module):
    """Efficient Multi-Scale Attention: 1x1 (coordinate) and 3x3 branches per group, fused across space.

    Per group of ``C/G`` channels: the 1x1 branch encodes the H- and W-pooled strips with a shared 1x1 conv,
    re-weights the group by their sigmoids and applies GroupNorm (``x1``); the 3x3 branch is a 3x3 conv
    (``x2``). Cross-spatial learning: ``softmax(GAP(x1)) @ x2 + softmax(GAP(x2)) @ x1`` (softmax over the
    group's channels, matmul over channels) gives one ``(H, W)`` map per group, whose sigmoid gates the group.

    Differences: none from the official code (parameter names ``conv1x1``, ``conv3x3``, ``gn``; GroupNorm with
    one channel per group, i.e. per-channel normalisation over H, W). The sigmoid of the final map is the
    ``gate`` call on ``(B, G, H, W)`` logits.

    Args:
        channels: input channels ``C``, divisible by ``groups``.
        groups: number of groups ``G`` (the paper's factor; default 32).
        gate_layer: gate on the fused map (sigmoid).
    """

    def __init__(self, channels: int, *, groups: int = 32, gate_layer: LayerType = "sigmoid"):
        super().__init__()
        _check_groups(channels, groups)
        self.groups = groups
        cg = channels // groups
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)
        self.gn = nn.GroupNorm(cg, cg)
        self.gate = Gate(gate_layer, kind="spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        xg = x.reshape(b * self.groups, c // self.groups, h, w)
        # 1x1 branch: coordinate-style strips through one shared 1x1 conv
        z = self.conv1x1(torch.cat([xg.mean(3, keepdim=True), xg.mean(2, keepdim=True).transpose(2, 3)], dim=2))
        z_h, z_w = torch.split(z, [h, w], dim=2)
        x1 = self.gn(xg * z_h.sigmoid() * z_w.transpose(2, 3).sigmoid())
        x2 = self.conv3x3(xg)  # 3x3 branch
        # cross-spatial learning: each branch's global descriptor attends over the other branch's positions
        d1 = x1.mean((2, 3)).softmax(-1).unsqueeze(1)  # (BG, 1, C/G)
        d2 = x2.mean((2, 3)).softmax(-1).unsqueeze(1)
        fused = d1 @ x2.flatten(2) + d2 @ x1.flatten(2)  # (BG, 1, HW)
        a = self.gate(fused.reshape(b, self.groups, h, w))
        return (xg.reshape(b, self.groups, -1, h, w) * a.unsqueeze(2)).reshape(b, c, h, w)
