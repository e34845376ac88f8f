"""Spatial attention: where to look.

- ``sam``: CBAM's spatial attention module, Woo et al., "CBAM: Convolutional Block Attention Module",
  ECCV 2018, https://arxiv.org/abs/1807.06521
- ``ul_spatial``: the same idea as written in Ultralytics (``ultralytics.nn.modules.conv.SpatialAttention``).
- ``ge``: Hu et al., "Gather-Excite: Exploiting Feature Context in Convolutional Neural Networks",
  NeurIPS 2018, https://arxiv.org/abs/1810.12348
- ``gc`` / ``gca``: Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
  ICCVW 2019, https://arxiv.org/abs/1904.11492
- ``strip``: strip-pooling attention as in timm's ``StripAttn``, after Hou et al., "Strip Pooling: Rethinking
  Spatial Pooling for Scene Parsing", CVPR 2020, https://arxiv.org/abs/2003.13328

Also home of :class:`SafeBatchNorm2d`, the BatchNorm the spatial and channel-spatial families use so that
batch-1 training on a 1x1 map does not fail.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention._base import (
    Gate,
    LayerType,
    SafeBatchNorm2d,
    ScalesInput,
    channel_max,
    check_odd_kernel,
    check_positive_int,
    create_act,
    mean_pool,
    reduced_channels,
)
from attnyolo.attention.gate_kinds import GateModule
from attnyolo.registry import register

_CBAM = "CBAM: Convolutional Block Attention Module"
_CBAM_URL = "https://arxiv.org/abs/1807.06521"
_GCNET = "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond"
_GCNET_URL = "https://arxiv.org/abs/1904.11492"


def mean_max(x: torch.Tensor) -> torch.Tensor:
    """``[AvgPool_c(x); MaxPool_c(x)]``: CBAM's channel-wise descriptors, shape ``(B, 2, H, W)``."""
    return torch.cat([mean_pool(x, 1), channel_max(x)], dim=1)


class SpatialSoftmax(GateModule):
    """Softmax over all positions of ``(B, 1, H, W)`` logits: the weights of an attention pooling."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) -> (B, K, H, W): softmax over the H*W positions of each map."""
        return torch.softmax(logits.flatten(2), dim=-1).view_as(logits)


@register(
    "sam",
    category="spatial",
    paper=_CBAM,
    year=2018,
    url=_CBAM_URL,
    reference="timm:timm.layers.cbam.SpatialAttn",
    notes="Channel order [avg; max] as in the paper's equation (the official code concatenates [max; mean]).",
)
class SpatialAttention(ScalesInput, nn.Module):
    """CBAM's spatial attention: ``Ms(F) = sigmoid(BN(conv_kxk([AvgPool_c(F); MaxPool_c(F)])))``.

    Paper, Sec. 3 (Eq. 3); the BN (and no conv bias) come from the official code and are what the paper's
    ResNet-50 + CBAM count (28,089,624) implies: 2*7*7 + 2 = 100 parameters per module. Equal to timm's
    ``SpatialAttn``; the official code uses BN momentum 0.01 (here too), timm 0.1 (running stats only).

    Args:
        channels: input channels (the module's parameters do not depend on them).
        kernel_size: odd size of the spatial convolution (paper: 7).
        use_bn: BatchNorm on the attention logits (official code: yes).
        gate_layer: gate activation (paper: sigmoid).
    """

    def __init__(self, channels: int, *, kernel_size: int = 7, use_bn: bool = True, gate_layer: LayerType = "sigmoid"):
        super().__init__()
        check_positive_int("channels", channels)
        check_odd_kernel("kernel_size", kernel_size)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = SafeBatchNorm2d(1, momentum=0.01) if use_bn else nn.Identity()
        self.gate = Gate(gate_layer, kind="spatial")

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.bn(self.conv(mean_max(x))))


@register(
    "ul_spatial",
    category="spatial",
    paper=_CBAM,
    year=2018,
    url=_CBAM_URL,
    reference="ultralytics:ultralytics.nn.modules.conv.SpatialAttention",
    constraints="kernel_size must be 3 or 7 (as Ultralytics)",
    notes="Ultralytics' variant of CBAM's spatial attention: no BatchNorm; state dict = Ultralytics' (cv1.weight).",
)
class UltralyticsSpatialAttention(ScalesInput, nn.Module):
    """Ultralytics' spatial attention: ``x * sigmoid(conv_kxk([mean_c(x); max_c(x)]))``, conv without bias.

    Same state dict (``cv1.weight``) and output as ``ultralytics.nn.modules.conv.SpatialAttention``, so its
    weights load unchanged. Differs from CBAM's spatial module (``sam``) by having no BatchNorm.

    Args:
        channels: input channels (unused by the layers; kept for the zoo's constructor contract).
        kernel_size: 3 or 7, as Ultralytics allows.
    """

    def __init__(self, channels: int, *, kernel_size: int = 7):
        super().__init__()
        check_positive_int("channels", channels)
        if kernel_size not in (3, 7):
            raise ValueError(f"kernel_size must be 3 or 7 (as Ultralytics' SpatialAttention), got {kernel_size!r}")
        self.cv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = Gate("sigmoid", kind="spatial")

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.cv1(mean_max(x)))


@register(
    "ge",
    category="spatial",
    paper="Gather-Excite: Exploiting Feature Context in Convolutional Neural Networks",
    year=2018,
    url="https://arxiv.org/abs/1810.12348",
    reference="timm:ge",
    constraints="extent is 0 (global) or a power of two; extra_params needs extent >= 2",
    notes=(
        "timm's GatherExcite cannot be built with its own defaults (use_mlp=True) nor with extra_params=True "
        "(TypeError from `*dd` arguments); this one can. Equal to timm wherever timm builds. The global "
        "parametric gather (extent=0, extra_params=True) needs a fixed feature size and is not offered. "
        "batch1_train holds for the default; with extra_params its BatchNorm falls back to running statistics "
        "on a single value."
    ),
)
class GatherExcite(ScalesInput, nn.Module):
    """Gather-Excite: ``y = x * sigmoid(interp(excite(gather(x))))``.

    Gather pools each channel over a spatial ``extent`` (0 = the whole map, the paper's best setting; else
    average pooling with kernel ``2e-1`` and stride ``e``, or with ``extra_params`` ``log2(e)`` stride-2
    depthwise 3x3 convs with BN, GE-theta). Excite is a 1x1-conv MLP (``use_mlp``, GE-theta+) or nothing
    (GE-theta-), then nearest-neighbour upsampling back to the input size and a sigmoid gate.

    Defaults follow timm's ``ge`` (global extent, MLP with bias, reduction 1/16, no channel rounding); with
    ``use_mlp=False`` it is the paper's parameter-free GE-theta-. Differences from timm: timm's constructor
    fails for ``use_mlp=True`` and for ``extra_params=True``; timm's experimental ``add_maxpool`` is omitted.

    Args:
        channels: input channels.
        extent: gather extent; 0 = global, else a power of two (2, 4, 8, ...).
        extra_params: learned depthwise-conv gather instead of average pooling (needs ``extent >= 2``).
        use_mlp: 1x1-conv MLP in the excite step.
        rd_ratio: MLP hidden width as a fraction of ``channels``.
        rd_channels: MLP hidden width, overrides ``rd_ratio``.
        rd_divisor: round the hidden width to a multiple of this.
        act_layer: activation in the MLP and between gather convs.
        gate_layer: gate activation.
    """

    def __init__(
        self,
        channels: int,
        *,
        extent: int = 0,
        extra_params: bool = False,
        use_mlp: bool = True,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        if isinstance(extent, bool) or not isinstance(extent, int) or extent < 0 or (extent & (extent - 1)):
            raise ValueError(f"extent must be 0 (global) or a power of two, got {extent!r}")
        if extent == 1:
            raise ValueError("extent must be 0 (global) or a power of two >= 2, got 1")
        if extra_params and extent == 0:
            raise ValueError(
                "extra_params with extent=0 (global) needs a fixed feature size; use extent >= 2 or extra_params=False"
            )
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.extent = extent
        self.gather = None
        if extra_params:
            layers: list[nn.Module] = []
            num_conv = int(math.log2(extent))
            for i in range(num_conv):
                layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False)]
                layers += [SafeBatchNorm2d(channels)]
                if i < num_conv - 1:
                    layers += [create_act(act_layer)]
            self.gather = nn.Sequential(*layers)
        if use_mlp:
            self.mlp = nn.Sequential(nn.Conv2d(channels, rd, 1), create_act(act_layer), nn.Conv2d(rd, channels, 1))
        else:
            self.mlp = nn.Identity()
        self.gate = Gate(gate_layer, kind="channel" if extent == 0 else "channel_spatial")

    def _gather(self, x: torch.Tensor) -> torch.Tensor:
        if self.gather is not None:
            return self.gather(x)
        if self.extent == 0:
            return mean_pool(x, (2, 3))
        k = 2 * self.extent - 1
        return F.avg_pool2d(x, k, stride=self.extent, padding=k // 2, count_include_pad=False)

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        context = self.mlp(self._gather(x))
        if context.shape[-2:] != (1, 1):
            context = F.interpolate(context, size=x.shape[-2:], mode="nearest")
        return self.gate(context)


class _ContextTransform(nn.Module):
    """GCNet's bottleneck transform ``conv1x1 -> LayerNorm -> ReLU -> conv1x1`` on a ``(B, C, 1, 1)`` context."""

    def __init__(self, channels: int, hidden: int, act_layer: LayerType):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.norm = nn.LayerNorm(hidden)
        self.act = create_act(act_layer)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, 1) -> (B, C, 1, 1)."""
        t = self.fc1(context)
        t = self.norm(t.flatten(1)).view_as(t)  # LN over the C/r channels of the single context vector
        return self.fc2(self.act(t))


@register(
    "gc",
    category="spatial",
    paper=_GCNET,
    year=2019,
    url=_GCNET_URL,
    preset={"fuse_add": False, "fuse_scale": True},
    reference="timm:gc",
    notes=(
        "Same fusion as timm's `gc` (channel scaling, sigmoid). Reduction 1/16 as in the paper (timm: 1/8); "
        "LayerNorm eps 1e-5 as the official code (timm: 1e-6). The paper's GC block is `gca`."
    ),
)
@register(
    "gca",
    category="spatial",
    paper=_GCNET,
    year=2019,
    url=_GCNET_URL,
    preset={"fuse_add": True, "fuse_scale": False},
    reference="timm:gca",
    notes=(
        "The paper's GC block (channel add, last conv zero-initialised, r=16); timm's `gca` has the same "
        "structure with reduction 1/8 and LayerNorm eps 1e-6."
    ),
)
class GlobalContext(nn.Module):
    """Global context block: ``z = x + W_v2 ReLU(LN(W_v1 sum_j softmax_j(W_k x_j) x_j))`` (GCNet, Eq. 4).

    (a) attention pooling: a 1x1 conv to one map, softmax over all H*W positions, weighted sum of ``x``;
    (b) bottleneck transform ``conv1x1 (C -> C/r), LayerNorm, ReLU, conv1x1 (C/r -> C)``;
    (c) fusion: broadcast add (``fuse_add``, the paper's default) and/or channel scaling by
    ``sigmoid(transform)`` (``fuse_scale``, GCNet's "multiplication" variant, timm's default).

    Class defaults are the paper's block (add fusion, r=16, last add conv zero-initialised so the block starts
    as identity; attention conv Kaiming fan-in with zero bias, as the official code). Registered names:
    ``gca`` = this default, ``gc`` = scale fusion (timm's ``gc`` semantics). Differences from timm: reduction
    1/16 (timm 1/8), LayerNorm eps 1e-5 (timm 1e-6), attention-conv bias zeroed.

    ``gate`` is the softmax of the attention pooling (weights ``(B, 1, H, W)``, uniform when ``use_attn`` is
    False, which is average pooling); ``scale_gate`` is the channel gate of the scale fusion.

    Args:
        channels: input channels.
        fuse_add: add the transformed context to every position (paper).
        fuse_scale: multiply every position by ``sigmoid`` of a transformed context.
        use_attn: attention pooling (paper); False = global average pooling (the SE-like ablation).
        rd_ratio: bottleneck ratio 1/r (paper: r=16).
        rd_channels: bottleneck width, overrides ``rd_ratio``.
        rd_divisor: round the bottleneck width to a multiple of this.
        act_layer: transform activation.
        gate_layer: gate of the scale fusion.
    """

    def __init__(
        self,
        channels: int,
        *,
        fuse_add: bool = True,
        fuse_scale: bool = False,
        use_attn: bool = True,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        if not (fuse_add or fuse_scale):
            raise ValueError("fuse_add and fuse_scale are both False: at least one fusion is needed")
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.conv_attn = nn.Conv2d(channels, 1, 1) if use_attn else None
        self.gate = SpatialSoftmax(kind="spatial")
        self.mlp_add = _ContextTransform(channels, rd, act_layer) if fuse_add else None
        self.mlp_scale = _ContextTransform(channels, rd, act_layer) if fuse_scale else None
        self.scale_gate = Gate(gate_layer, kind="channel") if fuse_scale else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.conv_attn is not None:
            nn.init.kaiming_normal_(self.conv_attn.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_attn.bias)
        if self.mlp_add is not None:
            # The paper zero-initialises the last layer so an inserted block starts as the identity.
            nn.init.zeros_(self.mlp_add.fc2.weight)
            nn.init.zeros_(self.mlp_add.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        # Without the attention conv, uniform logits make the softmax pooling an average pooling.
        logits = self.conv_attn(x) if self.conv_attn is not None else x.new_zeros(b, 1, h, w)
        weights = self.gate(logits)
        context = torch.matmul(x.reshape(b, c, h * w), weights.reshape(b, h * w, 1)).view(b, c, 1, 1)
        if self.mlp_scale is not None:
            x = x * self.scale_gate(self.mlp_scale(context))
        if self.mlp_add is not None:
            x = x + self.mlp_add(context)
        return x


@register(
    "strip",
    category="spatial",
    paper="Strip Pooling: Rethinking Spatial Pooling for Scene Parsing",
    year=2020,
    url="https://arxiv.org/abs/2003.13328",
    reference="timm:strip",
    notes=(
        "timm's minimal StripAttn, not the paper's full strip pooling module (which adds a 1x1 conv after "
        "the fused strips and sits in a residual block)."
    ),
)
class StripAttention(nn.Module):
    """Strip attention: ``y = x * sigmoid(dwconv_kx1(mean_W(x)) + dwconv_1xk(mean_H(x)))``.

    Pools each channel along rows and along columns (strip pooling, Hou et al. 2020), refines each strip
    with a 1-D depthwise convolution, broadcasts their sum back to ``H x W`` and gates. This is timm's
    ``StripAttn`` (same name ``strip``, same outputs with the same weights); the paper's Strip Pooling Module
    additionally fuses the sum with a 1x1 conv, which is not done here.

    Args:
        channels: input channels.
        use_conv: learn the 1-D depthwise refinements (False: plain strip means).
        kernel_size: odd length of the 1-D depthwise convolutions.
        bias: conv bias.
        gate_layer: gate activation.
        has_skip: return ``x + x * gate`` instead of ``x * gate``.
    """

    def __init__(
        self,
        channels: int,
        *,
        use_conv: bool = True,
        kernel_size: int = 3,
        bias: bool = False,
        gate_layer: LayerType = "sigmoid",
        has_skip: bool = False,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_odd_kernel("kernel_size", kernel_size)
        self.has_skip = has_skip
        if use_conv:
            pad = kernel_size // 2
            self.conv_h = nn.Conv2d(channels, channels, (kernel_size, 1), padding=(pad, 0), groups=channels, bias=bias)
            self.conv_w = nn.Conv2d(channels, channels, (1, kernel_size), padding=(0, pad), groups=channels, bias=bias)
        else:
            self.conv_h = nn.Identity()
            self.conv_w = nn.Identity()
        self.gate = Gate(gate_layer, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        strip_h = self.conv_h(mean_pool(x, 3))  # (B, C, H, 1)
        strip_w = self.conv_w(mean_pool(x, 2))  # (B, C, 1, W)
        out = x * self.gate(strip_h + strip_w)
        return x + out if self.has_skip else out
