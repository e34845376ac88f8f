"""Channel-spatial attention: what and where together.

- ``cbam``, ``lcbam``, ``ul_cbam``: Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018,
  https://arxiv.org/abs/1807.06521 (``lcbam``: timm's light variant; ``ul_cbam``: Ultralytics' variant).
- ``bam``: Park et al., "BAM: Bottleneck Attention Module", BMVC 2018, https://arxiv.org/abs/1807.06514
- ``scse``: Roy et al., "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional
  Networks", MICCAI 2018, https://arxiv.org/abs/1803.02579
- ``triplet``: Misra et al., "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021,
  https://arxiv.org/abs/2010.03045
- ``simam``: Yang et al., "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural
  Networks", ICML 2021, https://proceedings.mlr.press/v139/yang21o.html
- ``gam``: Liu et al., "Global Attention Mechanism: Retain Information to Enhance Channel-Spatial
  Interactions", arXiv 2021, https://arxiv.org/abs/2112.05561
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import (
    Gate,
    LayerType,
    SafeBatchNorm2d,
    channel_max,
    check_odd_kernel,
    check_positive,
    check_positive_int,
    create_act,
    global_max_pool,
    mean_pool,
    reduced_channels,
)
from attnyolo.attention.gate_kinds import GateModule
from attnyolo.attention.spatial import UltralyticsSpatialAttention, mean_max
from attnyolo.registry import register

_CBAM = "CBAM: Convolutional Block Attention Module"
_CBAM_URL = "https://arxiv.org/abs/1807.06521"


def _spatial_conv(in_maps: int, kernel_size: int, momentum: float = 0.1) -> nn.Sequential:
    """``conv_kxk (no bias) -> BN`` from pooled maps to one attention map (CBAM / triplet ``BasicConv``)."""
    return nn.Sequential(
        nn.Conv2d(in_maps, 1, kernel_size, padding=kernel_size // 2, bias=False),
        SafeBatchNorm2d(1, momentum=momentum),
    )


class _Mlp(nn.Module):
    """Shared 1x1-conv MLP ``C -> C/r -> C`` on pooled ``(B, C, 1, 1)`` descriptors."""

    def __init__(self, channels: int, hidden: int, act_layer: LayerType, bias: bool):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.act = create_act(act_layer)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, 1) -> (B, C, 1, 1): a pooled descriptor's logits."""
        return self.fc2(self.act(self.fc1(x)))


@register(
    "cbam",
    category="channel_spatial",
    paper=_CBAM,
    year=2018,
    url=_CBAM_URL,
    reference="timm:cbam",
    notes=(
        "Paper default: MLP with bias (ResNet-50 + CBAM = 28,089,624 parameters). timm's CbamModule has no MLP "
        "bias (mlp_bias=False here, 28,073,576). Spatial maps ordered [avg; max] as the paper's Eq. 3 and "
        "timm (official code: [max; mean]). `gate` is the spatial gate; `channel_gate` the channel one."
    ),
)
class CBAM(nn.Module):
    """CBAM: ``F' = Mc(F) * F``, ``F'' = Ms(F') * F'`` (paper, Eq. 1-3).

    ``Mc(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))`` with a shared MLP ``C -> C/r -> C``;
    ``Ms(F') = sigmoid(BN(conv7x7([AvgPool_c(F'); MaxPool_c(F')])))``. The BN and the bias-free spatial conv come
    from the official code (BN momentum 0.01) and match the paper's parameter count.

    Differences: timm's ``CbamModule`` uses ``mlp_bias=False`` (set it to get timm's module and weights); the
    official ResNet init zeroes the spatial BN weight, which is a network-level choice not reproduced here.

    Args:
        channels: input channels.
        rd_ratio: MLP reduction 1/r (paper: r=16).
        rd_channels: MLP hidden width, overrides ``rd_ratio``.
        rd_divisor: round the hidden width to a multiple of this (1 = ``round(C/r)``, at least 1).
        spatial_kernel_size: odd kernel of the spatial conv (paper: 7).
        mlp_bias: biases in the shared MLP (paper/official: yes; timm: no).
        act_layer: MLP activation.
        gate_layer: activation of both gates.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        spatial_kernel_size: int = 7,
        mlp_bias: bool = True,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_odd_kernel("spatial_kernel_size", spatial_kernel_size)
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.mlp = _Mlp(channels, rd, act_layer, mlp_bias)
        self.channel_gate = Gate(gate_layer, kind="channel")
        self.spatial = _spatial_conv(2, spatial_kernel_size, momentum=0.01)
        self.gate = Gate(gate_layer, kind="spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        mc = self.mlp(mean_pool(x, (2, 3))) + self.mlp(global_max_pool(x))
        x = x * self.channel_gate(mc)
        return x * self.gate(self.spatial(mean_max(x)))


@register(
    "lcbam",
    category="channel_spatial",
    paper=_CBAM,
    year=2018,
    url=_CBAM_URL,
    reference="timm:lcbam",
    notes="timm's experimental light CBAM (not in the paper): avg and max pools averaged before one MLP pass.",
)
class LightCBAM(nn.Module):
    """Light CBAM (timm's ``LightCbamModule``): each attention pools ``(avg + max) / 2`` once.

    ``Mc = sigmoid(MLP((AvgPool(F) + MaxPool(F)) / 2))``, ``Ms = sigmoid(BN(conv7x7((mean_c(F') + max_c(F')) / 2)))``:
    one MLP pass and a 1-map spatial conv instead of CBAM's two passes and 2-map conv. Same outputs as timm with
    the same weights. Difference: timm always uses sigmoid in both gates (ignoring ``gate_layer``); here
    ``gate_layer`` applies to both.

    Args:
        channels: input channels.
        rd_ratio: MLP reduction 1/r.
        rd_channels: MLP hidden width, overrides ``rd_ratio``.
        rd_divisor: round the hidden width to a multiple of this.
        spatial_kernel_size: odd kernel of the spatial conv.
        mlp_bias: biases in the MLP (timm: no).
        act_layer: MLP activation.
        gate_layer: activation of both gates.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        spatial_kernel_size: int = 7,
        mlp_bias: bool = False,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_odd_kernel("spatial_kernel_size", spatial_kernel_size)
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.mlp = _Mlp(channels, rd, act_layer, mlp_bias)
        self.channel_gate = Gate(gate_layer, kind="channel")
        self.spatial = _spatial_conv(1, spatial_kernel_size)
        self.gate = Gate(gate_layer, kind="spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        pooled = 0.5 * mean_pool(x, (2, 3)) + 0.5 * global_max_pool(x)
        x = x * self.channel_gate(self.mlp(pooled))
        pooled_c = 0.5 * mean_pool(x, 1) + 0.5 * channel_max(x)
        return x * self.gate(self.spatial(pooled_c))


class _UltralyticsChannelAttention(nn.Module):
    """Ultralytics' ``ChannelAttention`` (from RTMDet): ``x * sigmoid(conv1x1_C->C(AvgPool(x)))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.gate = Gate("sigmoid", kind="channel")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x * self.gate(self.fc(mean_pool(x, (2, 3))))


@register(
    "ul_cbam",
    category="channel_spatial",
    paper=_CBAM,
    year=2018,
    url=_CBAM_URL,
    reference="ultralytics:ultralytics.nn.modules.conv.CBAM",
    constraints="kernel_size must be 3 or 7 (as Ultralytics)",
    notes=(
        "Ultralytics' CBAM: its channel attention is one full C->C 1x1 conv on the average pool (no MLP, no "
        "max pool) and its spatial conv has no BN. State dict = Ultralytics' (loads unchanged)."
    ),
)
class UltralyticsCBAM(nn.Module):
    """Ultralytics' CBAM: ``x' = x * sigmoid(fc(AvgPool(x)))``, ``y = x' * sigmoid(conv_k([mean_c; max_c](x')))``.

    Same state dict and outputs as ``ultralytics.nn.modules.conv.CBAM``. Differs from the paper: the channel
    attention is a single ``C -> C`` 1x1 conv with bias on the average pool only (RTMDet style), and the
    spatial conv has no BatchNorm. ``gate`` is the spatial gate (also ``spatial_attention.gate``).

    Args:
        channels: input channels.
        kernel_size: spatial kernel, 3 or 7.
    """

    def __init__(self, channels: int, *, kernel_size: int = 7):
        super().__init__()
        check_positive_int("channels", channels)
        self.channel_attention = _UltralyticsChannelAttention(channels)
        self.spatial_attention = UltralyticsSpatialAttention(channels, kernel_size=kernel_size)
        self.gate = self.spatial_attention.gate  # the module-level hook point, shared (no parameters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return self.spatial_attention(self.channel_attention(x))


@register(
    "bam",
    category="channel_spatial",
    paper="BAM: Bottleneck Attention Module",
    year=2018,
    url="https://arxiv.org/abs/1807.06514",
    notes=(
        "Structure of the official code (BN after each hidden layer; ResNet-50 + 3 BAMs = 25,915,099 "
        "parameters); fusion by sum as the paper's equation (official code: product, fuse='mul'). Batch-1 "
        "training: the BN after global pooling sees one value per channel; it then normalises with its running "
        "statistics instead of raising (SafeBatchNorm2d)."
    ),
)
class BAM(nn.Module):
    """BAM: ``F' = F + F * M(F)``, ``M(F) = sigmoid(Mc(F) + Ms(F))`` (paper, Eq. 1-2).

    Channel branch ``Mc``: global average pool, MLP ``C -> C/r -> C`` with BN + ReLU on the hidden layer.
    Spatial branch ``Ms``: 1x1 conv ``C -> C/r``, ``num_dilated`` 3x3 convs with dilation ``d``, each with
    BN + ReLU, then 1x1 conv to one map. Broadcast to ``C x H x W``, summed, gated.

    Differences from the paper: the paper writes one BN at each branch's output; the official code (and the
    paper's parameter count) has BN after each hidden layer instead, which is followed here. The official code
    fuses with a product ``sigmoid(Mc * Ms)`` (``fuse="mul"``); the paper and the default use the sum. A BN that
    sees a single value per channel while training (batch 1; always true in the channel branch) uses its running
    statistics instead of failing (see :class:`~attnyolo.attention._base.SafeBatchNorm2d`).

    Args:
        channels: input channels.
        rd_ratio: reduction 1/r of both branches (paper: r=16).
        rd_channels: hidden width, overrides ``rd_ratio``.
        rd_divisor: round the hidden width to a multiple of this.
        dilation: dilation of the spatial 3x3 convs (paper: 4).
        num_dilated: number of dilated 3x3 convs (paper: 2).
        fuse: ``"add"`` (paper) or ``"mul"`` (official code) to combine the two branches.
        act_layer: hidden activation.
        gate_layer: gate activation.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        dilation: int = 4,
        num_dilated: int = 2,
        fuse: str = "add",
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("dilation", dilation)
        if isinstance(num_dilated, bool) or not isinstance(num_dilated, int) or num_dilated < 0:
            raise ValueError(f"num_dilated must be a non-negative integer, got {num_dilated!r}")
        if fuse not in ("add", "mul"):
            raise ValueError(f"fuse must be 'add' (paper) or 'mul' (official code), got {fuse!r}")
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.fuse = fuse
        self.channel_att = nn.Sequential(
            nn.Conv2d(channels, rd, 1), SafeBatchNorm2d(rd), create_act(act_layer), nn.Conv2d(rd, channels, 1)
        )
        spatial: list[nn.Module] = [nn.Conv2d(channels, rd, 1), SafeBatchNorm2d(rd), create_act(act_layer)]
        for _ in range(num_dilated):
            spatial += [nn.Conv2d(rd, rd, 3, padding=dilation, dilation=dilation)]
            spatial += [SafeBatchNorm2d(rd), create_act(act_layer)]
        spatial += [nn.Conv2d(rd, 1, 1)]
        self.spatial_att = nn.Sequential(*spatial)
        self.gate = Gate(gate_layer, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        mc = self.channel_att(mean_pool(x, (2, 3)))  # (B, C, 1, 1)
        ms = self.spatial_att(x)  # (B, 1, H, W)
        return x + x * self.gate(mc + ms if self.fuse == "add" else mc * ms)


class _ConcurrentGate(GateModule):
    """scSE's combined weights: ``sigmoid(c) + sigmoid(s)`` for ``"add"``; for ``"max"`` the weight that
    ``max(x * sigmoid(c), x * sigmoid(s))`` applies (the larger gate where ``x >= 0``, the smaller elsewhere)."""

    def __init__(self, layer: LayerType, fuse: str, *, kind: str):
        super().__init__(kind=kind)
        self.fn = create_act(layer)
        self.fuse = fuse

    def forward(self, channel_logits: torch.Tensor, spatial_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, 1), (B, 1, H, W) logits and x (B, C, H, W) -> (B, C, H, W)."""
        gc, gs = self.fn(channel_logits), self.fn(spatial_logits)
        if self.fuse == "add":
            return gc + gs
        return torch.where(x >= 0, torch.maximum(gc, gs), torch.minimum(gc, gs))


@register(
    "scse",
    category="channel_spatial",
    paper="Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional Networks",
    year=2018,
    url="https://arxiv.org/abs/1803.02579",
    notes=(
        "MICCAI paper: cSE (r=2) + sSE combined by addition (default). fuse='max' is the official code's "
        "(ai-med/squeeze_and_excitation) element-wise max of the two outputs."
    ),
)
class SCSE(nn.Module):
    """Concurrent spatial and channel SE: ``y = x * sigmoid(W2 ReLU(W1 GAP(x))) + x * sigmoid(w_s . x)``.

    cSE squeezes space and excites channels (an SE block with reduction ``r``, biases as the official code);
    sSE squeezes channels with a 1x1 conv to one map and excites positions. The MICCAI paper adds both
    outputs (default); the official code (and the journal version) takes their element-wise maximum
    (``fuse="max"``). ``gate`` returns the combined weight applied to ``x``.

    Args:
        channels: input channels.
        rd_ratio: cSE hidden width as a fraction of ``channels`` (paper: 1/2).
        rd_channels: cSE hidden width, overrides ``rd_ratio``.
        rd_divisor: round the hidden width to a multiple of this.
        fuse: ``"add"`` (MICCAI paper) or ``"max"`` (official code).
        act_layer: cSE hidden activation.
        gate_layer: gate activation.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 2,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        fuse: str = "add",
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        if fuse not in ("add", "max"):
            raise ValueError(f"fuse must be 'add' (paper) or 'max' (official code), got {fuse!r}")
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.cse = _Mlp(channels, rd, act_layer, bias=True)
        self.sse = nn.Conv2d(channels, 1, 1)
        self.gate = _ConcurrentGate(gate_layer, fuse, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x * self.gate(self.cse(mean_pool(x, (2, 3))), self.sse(x), x)


class _MeanGate(GateModule):
    """Triplet attention's applied weights: the mean of the branches' gated maps, broadcast to ``(B, C, H, W)``."""

    def __init__(self, layer: LayerType, *, kind: str):
        super().__init__(kind=kind)
        self.fn = create_act(layer)

    def forward(self, *logits: torch.Tensor) -> torch.Tensor:
        """Logits that broadcast together -> the mean of their weights, broadcast."""
        total = self.fn(logits[0])
        for branch in logits[1:]:
            total = total + self.fn(branch)
        return total / len(logits)


def _zpool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Z-pool over ``dim``: ``[max; mean]`` stacked as 2 maps in dim 1, the other two axes kept in order."""
    # max(dim).values, not amax: see channel_max
    return torch.stack([x.max(dim=dim).values, mean_pool(x, dim, keepdim=False)], dim=1)


@register(
    "triplet",
    category="channel_spatial",
    paper="Rotate to Attend: Convolutional Triplet Attention Module",
    year=2021,
    url="https://arxiv.org/abs/2010.03045",
    notes=(
        "Same maps as the official permute-based code (each branch convolves the same planes in the same "
        "orientation), computed by pooling in place instead of permuting the whole tensor. `gate` returns the "
        "averaged branch weights (B, C, H, W)."
    ),
)
class TripletAttention(nn.Module):
    """Triplet attention: ``y = x * (sigmoid(a_CW) + sigmoid(a_HC) + sigmoid(a_HW)) / 3`` (paper, Eq. 2).

    Each branch Z-pools (``[max; mean]``) one axis away and applies ``conv_kxk (no bias) -> BN`` to the plane of
    the other two: the C-W plane (pooled over H), the H-C plane (pooled over W, H as rows as in the official
    rotation) and the H-W plane (pooled over C, dropped by ``no_spatial``). 3 x (2k^2 + 2) parameters: 300 for
    k=7, whatever ``channels``. BN momentum 0.01 as the official code.

    Args:
        channels: input channels (the parameters do not depend on them).
        kernel_size: odd kernel of the branch convs (paper: 7).
        no_spatial: drop the H-W branch (the paper's ablation).
        gate_layer: gate activation.
    """

    def __init__(
        self, channels: int, *, kernel_size: int = 7, no_spatial: bool = False, gate_layer: LayerType = "sigmoid"
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_odd_kernel("kernel_size", kernel_size)
        self.cw = _spatial_conv(2, kernel_size, momentum=0.01)
        self.hc = _spatial_conv(2, kernel_size, momentum=0.01)
        self.hw = None if no_spatial else _spatial_conv(2, kernel_size, momentum=0.01)
        self.gate = _MeanGate(gate_layer, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        a_cw = self.cw(_zpool(x, 2)).transpose(1, 2)  # (B, 2, C, W) -> (B, 1, C, W) -> (B, C, 1, W)
        a_hc = self.hc(_zpool(x, 3).transpose(2, 3)).permute(0, 3, 2, 1)  # (B, 2, H, C) -> (B, C, H, 1)
        if self.hw is None:
            return x * self.gate(a_cw, a_hc)
        a_hw = self.hw(_zpool(x, 1))  # (B, 1, H, W)
        return x * self.gate(a_cw, a_hc, a_hw)


@register(
    "simam",
    category="channel_spatial",
    paper="SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
    year=2021,
    url="https://proceedings.mlr.press/v139/yang21o.html",
    notes="Parameter-free. On a 1x1 map (n = H*W - 1 = 0) the variance is taken as 0 instead of 0/0 = NaN.",
)
class SimAM(nn.Module):
    """SimAM: ``y = x * sigmoid(1 / E*)`` with ``1 / E* = (x - mu)^2 / (4 (sigma^2 + lambda)) + 1/2`` (paper, Eq. 5).

    ``mu`` and ``sigma^2 = sum (x - mu)^2 / n`` (``n = H*W - 1``) are per channel over the map. No parameters.
    Difference from the official code: when ``H*W = 1`` the official code divides 0 by 0 (NaN); here ``n`` is
    at least 1, so the variance is 0 and every weight is ``sigmoid(1/2)``.

    Args:
        channels: input channels (no parameters depend on them).
        e_lambda: the regulariser ``lambda`` (paper: 1e-4).
    """

    def __init__(self, channels: int, *, e_lambda: float = 1e-4):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive("e_lambda", e_lambda)
        self.e_lambda = float(e_lambda)
        self.gate = Gate("sigmoid", kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        n = max(x.shape[2] * x.shape[3] - 1, 1)
        d = (x - mean_pool(x, (2, 3))).square()
        k = 0.25 / (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)  # 1 / (4 (sigma^2 + lambda)), per channel
        inv_energy = torch.addcmul(torch.full_like(k, 0.5), d, k)  # d * k + 1/2 in one full-size pass
        return x * self.gate(inv_energy)


@register(
    "gam",
    category="channel_spatial",
    paper="Global Attention Mechanism: Retain Information to Enhance Channel-Spatial Interactions",
    year=2021,
    url="https://arxiv.org/abs/2112.05561",
    notes=(
        "Shape-preserving (the widely copied code also takes a different output width). No grouped convs / "
        "channel shuffle (the paper's ResNet-50 trick to limit parameters). `gate` is the spatial gate, "
        "`channel_gate` the channel one."
    ),
)
class GAM(nn.Module):
    """Global attention mechanism: ``F2 = Mc(F1) * F1``, ``F3 = Ms(F2) * F2`` without any pooling.

    ``Mc``: the channel vector at every position goes through an MLP ``C -> C/r -> C`` (the paper's 3-D
    permutation; here ``nn.Linear`` on the channels-last view), then sigmoid. ``Ms``: ``conv7x7 (C -> C/r)``,
    BN, ReLU, ``conv7x7 (C/r -> C)``, BN, sigmoid: a full ``C x H x W`` map. Convs and linears with bias, as
    the commonly used implementation (no official code was released).

    Args:
        channels: input channels.
        rd_ratio: reduction 1/r of both sub-modules (paper: r=4).
        rd_channels: hidden width, overrides ``rd_ratio``.
        rd_divisor: round the hidden width to a multiple of this.
        kernel_size: odd kernel of the spatial convs (paper: 7).
        act_layer: hidden activation.
        gate_layer: activation of both gates.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 4,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        kernel_size: int = 7,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_odd_kernel("kernel_size", kernel_size)
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.channel_mlp = nn.Sequential(nn.Linear(channels, rd), create_act(act_layer), nn.Linear(rd, channels))
        self.channel_gate = Gate(gate_layer, kind="channel_spatial")
        pad = kernel_size // 2
        self.spatial = nn.Sequential(
            nn.Conv2d(channels, rd, kernel_size, padding=pad),
            SafeBatchNorm2d(rd),
            create_act(act_layer),
            nn.Conv2d(rd, channels, kernel_size, padding=pad),
            SafeBatchNorm2d(channels),
        )
        self.gate = Gate(gate_layer, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        mc = self.channel_mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = x * self.channel_gate(mc)
        return x * self.gate(self.spatial(x))
