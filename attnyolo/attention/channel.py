"""Channel attention: re-weight every channel of ``x`` by a gate computed from global statistics of ``x``.

Papers (equation numbers refer to them):

- SE: Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018. https://arxiv.org/abs/1709.01507
- eSE: Lee, Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation", CVPR 2020.
  https://arxiv.org/abs/1911.06667
- ECA: Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks", CVPR 2020.
  https://arxiv.org/abs/1910.03151
- GCT: Yang et al., "Gated Channel Transformation for Visual Recognition", CVPR 2020.
  https://arxiv.org/abs/1909.11519
- SRM: Lee, Kim, Nam, "SRM: A Style-based Recalibration Module for Convolutional Neural Networks", ICCV 2019.
  https://arxiv.org/abs/1903.10829
- FcaNet: Qin et al., "FcaNet: Frequency Channel Attention Networks", ICCV 2021. https://arxiv.org/abs/2012.11879
- RTMDet's channel attention (as Ultralytics' ``ChannelAttention``): Lyu et al., "RTMDet: An Empirical Study of
  Designing Real-Time Object Detectors", 2022. https://arxiv.org/abs/2212.07784
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnyolo.attention._base import (
    Gate,
    LayerType,
    SafeBatchNorm2d,
    ScalesInput,
    check_odd_kernel,
    check_positive,
    check_positive_int,
    create_act,
    global_max_pool,
    mean_pool,
    reduced_channels,
)
from attnyolo.registry import register

_ECA_PAPER = "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks"
_ECA_URL = "https://arxiv.org/abs/1910.03151"


@register(
    "se",
    category="channel",
    paper="Squeeze-and-Excitation Networks",
    year=2018,
    url="https://arxiv.org/abs/1709.01507",
    reference="timm:SEModule",
    notes="Hidden width round(C/r) (rd_divisor=1), i.e. the paper's C/r for every C divisible by r; "
    "timm's SEModule rounds it to a multiple of 8 (rd_divisor=8).",
)
class SqueezeExcite(ScalesInput, nn.Module):
    """Squeeze-and-Excitation: ``y = x * sigmoid(W2 relu(W1 GAP(x)))`` (Hu et al., Eq. 2-4).

    Args:
        channels: input channels C.
        rd_ratio: 1/r, the bottleneck ratio (paper: r = 16).
        rd_channels: hidden width; overrides ``rd_ratio``.
        rd_divisor: the hidden width is rounded to the nearest multiple of this. The default 1 keeps
            the paper's C/r (28,088,024 parameters for SE-ResNet-50); timm's ``SEModule`` uses 8.
        act_layer: activation between the two FC layers (paper: ReLU).
        gate_layer: gate (paper: sigmoid).
        bias: FC layers with bias (paper: yes).

    Differs from the paper: the FC layers are 1x1 convolutions (same weights, no reshape); for C not
    divisible by r the hidden width is C/r rounded to the nearest integer, never below 1.
    Differs from timm's ``SEModule``: only the default ``rd_divisor`` (1 here, 8 in timm); with
    ``rd_divisor=8`` the two compute the same function with the same state-dict keys.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
        bias: bool = True,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        hidden = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.act = create_act(act_layer)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)
        self.gate = Gate(gate_layer, kind="channel")

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        z = mean_pool(x, (2, 3))  # squeeze, Eq. 2
        return self.gate(self.fc2(self.act(self.fc1(z))))  # excitation, Eq. 3; forward scales x by it, Eq. 4


@register(
    "ese",
    category="channel",
    paper="CenterMask: Real-Time Anchor-Free Instance Segmentation",
    year=2020,
    url="https://arxiv.org/abs/1911.06667",
    reference="timm:EffectiveSEModule",
    notes="add_maxpool (off by default) is timm's experiment, not in the paper.",
)
class EffectiveSqueezeExcite(ScalesInput, nn.Module):
    """Effective SE (VoVNetV2's eSE): ``y = x * hard_sigmoid(W GAP(x))`` with one C x C FC layer.

    Args:
        channels: input channels C.
        add_maxpool: squeeze with ``(GAP + GMP) / 2`` instead of GAP (timm's option; not in the paper).
        gate_layer: gate (paper: hard sigmoid, ``relu6(x + 3) / 6``).

    Differs from the paper: the FC layer is a 1x1 convolution with bias. Same as timm's
    ``EffectiveSEModule`` (same state-dict keys).
    """

    def __init__(self, channels: int, *, add_maxpool: bool = False, gate_layer: LayerType = "hard_sigmoid"):
        super().__init__()
        check_positive_int("channels", channels)
        self.add_maxpool = bool(add_maxpool)
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.gate = Gate(gate_layer, kind="channel")

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        z = mean_pool(x, (2, 3))
        if self.add_maxpool:
            z = 0.5 * z + 0.5 * global_max_pool(x)
        return self.gate(self.fc(z))


@register(
    "ul_channel",
    category="channel",
    paper="RTMDet: An Empirical Study of Designing Real-Time Object Detectors",
    year=2022,
    url="https://arxiv.org/abs/2212.07784",
    reference="ultralytics:ChannelAttention",
    notes="Ultralytics' ChannelAttention (used in its CBAM) gates with a sigmoid; RTMDet's CSPNeXt block "
    "uses a hard sigmoid (gate_layer='hard_sigmoid'), which is exactly eSE.",
)
class UltralyticsChannelAttention(EffectiveSqueezeExcite):
    """Ultralytics' ``ChannelAttention``: ``y = x * sigmoid(W GAP(x))``, one C x C 1x1 conv with bias.

    Args:
        channels: input channels C.
        add_maxpool: squeeze with ``(GAP + GMP) / 2`` (not in Ultralytics or RTMDet).
        gate_layer: gate (Ultralytics: sigmoid; RTMDet: hard sigmoid).

    The same computation as eSE with a sigmoid gate; same state-dict keys as
    ``ultralytics.nn.modules.conv.ChannelAttention`` (``fc.weight``, ``fc.bias``).
    """

    def __init__(self, channels: int, *, add_maxpool: bool = False, gate_layer: LayerType = "sigmoid"):
        super().__init__(channels, add_maxpool=add_maxpool, gate_layer=gate_layer)


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """ECA's adaptive kernel size ``k = |log2(C) / gamma + beta / gamma|_odd`` (Wang et al., Eq. 12).

    ``|t|_odd`` is the odd integer nearest to ``t``; at a tie (t even) it rounds up, as the authors'
    code does (``int(t)``, plus one when even). C = 256 -> 5, 2048 -> 7, 64 -> 3, C < 8 -> 1.
    """
    check_positive_int("channels", channels)
    check_positive("gamma", gamma)
    t = int(abs(math.log2(channels) / gamma + beta / gamma))
    return t if t % 2 else t + 1


@register(
    "eca",
    category="channel",
    paper=_ECA_PAPER,
    year=2020,
    url=_ECA_URL,
    reference="timm:EcaModule",
    notes="kernel_size=None takes the paper's adaptive k; timm never goes below k=3 (differs for C < 8).",
)
@register(
    "ecam",
    category="channel",
    paper=_ECA_PAPER,
    year=2020,
    url=_ECA_URL,
    preset={"use_mlp": True},
    reference="timm:EcaModule(use_mlp=True)",
    notes="timm's experiment, not in the paper: 1x1 conv1d to rd_channels, ReLU, then the k-wide conv1d.",
)
@register(
    "ceca",
    category="channel",
    paper=_ECA_PAPER,
    year=2020,
    url=_ECA_URL,
    preset={"circular_padding": True},
    reference="timm:CecaModule",
    notes="Circular padding over channels is timm's variant (by Chris Ha), not in the paper.",
)
class EfficientChannelAttention(ScalesInput, nn.Module):
    """Efficient Channel Attention: ``y = x * sigmoid(conv1d_k(GAP(x)))``, no dimensionality reduction (Eq. 11).

    Args:
        channels: input channels C.
        kernel_size: width k of the 1-D convolution across channels; ``None`` (default) takes the
            paper's adaptive ``k = |log2(C)/gamma + beta/gamma|_odd`` (:func:`eca_kernel_size`).
        gamma: gamma of the adaptive rule (paper: 2).
        beta: b of the adaptive rule (paper: 1).
        circular_padding: pad the channel axis circularly instead of with zeros (``ceca``, timm's variant).
        use_mlp: timm's ``ecam`` experiment: a 1x1 conv1d to ``rd_channels`` (with bias), ``act_layer``,
            then the k-wide conv1d (with bias). Not in the paper.
        rd_ratio: ``ecam`` hidden width as a fraction of C (timm: 1/8).
        rd_channels: ``ecam`` hidden width; overrides ``rd_ratio``.
        rd_divisor: ``ecam`` hidden width is a multiple of this (timm: 8).
        act_layer: ``ecam`` activation (timm: ReLU).
        gate_layer: gate (paper: sigmoid).

    Differs from the paper: nothing for the default (conv1d without bias, zero padding, adaptive k).
    Differs from timm's ``EcaModule``/``CecaModule``: an explicit ``kernel_size`` is used as given (timm
    ignores it whenever ``channels`` is given), and the adaptive k follows the paper down to 1 for C < 8
    (timm raises it to 3). Circular padding is done by indexing, so it also works when k > C.

    The paper's ECA-ResNet-50 (80 extra parameters) uses k = 3, 5, 5, 7 for its four stages (the
    authors' released ``k3557`` model), not the adaptive rule (5, 5, 5, 7: 86 parameters); pass
    ``kernel_size`` to reproduce it.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int | None = None,
        gamma: float = 2,
        beta: float = 1,
        circular_padding: bool = False,
        use_mlp: bool = False,
        rd_ratio: float = 1 / 8,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        # The ecam hidden width is only built with use_mlp, but an invalid value is refused whatever the preset:
        # a YAML saying rd_ratio=0 is wrong even where it has no effect.
        check_positive("rd_ratio", rd_ratio)
        check_positive_int("rd_divisor", rd_divisor)
        if rd_channels is not None:
            check_positive_int("rd_channels", rd_channels)
        check_positive("gamma", gamma)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise ValueError(f"beta must be a number, got {beta!r}")
        act = create_act(act_layer)  # checked (a name, class or factory) also where only ecam uses it
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        check_odd_kernel("kernel_size", kernel_size)
        self.kernel_size = kernel_size
        pad = (kernel_size - 1) // 2
        conv_pad = 0 if circular_padding else pad
        if circular_padding:
            # Gather indices (-pad .. C+pad-1) mod C: circular padding that also works for pad > C.
            index = torch.arange(-pad, channels + pad) % channels
            self.register_buffer("circular_index", index, persistent=False)
        else:
            self.circular_index = None
        if use_mlp:
            hidden = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor, round_limit=0.9)
            self.conv = nn.Conv1d(1, hidden, 1, bias=True)
            self.act = act
            self.conv2 = nn.Conv1d(hidden, 1, kernel_size, padding=conv_pad, bias=True)
        else:
            self.conv = nn.Conv1d(1, 1, kernel_size, padding=conv_pad, bias=False)
            self.act = None
            self.conv2 = None
        self.gate = Gate(gate_layer, kind="channel")

    def _pad(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.circular_index is None else y.index_select(-1, self.circular_index)

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        y = mean_pool(x, (2, 3)).reshape(b, 1, c)  # GAP, channels as a 1-D sequence
        if self.conv2 is not None:
            y = self.act(self.conv(y))  # ecam: 1x1 conv1d to rd_channels first
        kconv = self.conv if self.conv2 is None else self.conv2
        y = kconv(self._pad(y))  # local cross-channel interaction, Eq. 11
        return self.gate(y).reshape(b, c, 1, 1)


class _OnePlusTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any shape -> the same shape: ``1 + tanh(x)``."""
        return 1.0 + torch.tanh(x)


@register(
    "gct",
    category="channel",
    paper="Gated Channel Transformation for Visual Recognition",
    year=2020,
    url="https://arxiv.org/abs/1909.11519",
    notes="Follows the authors' code: eps inside both square roots; starts as the identity (gamma=beta=0).",
)
class GatedChannelTransform(ScalesInput, nn.Module):
    """Gated Channel Transformation: ``y = x * (1 + tanh(gamma * s_hat + beta))`` (Yang et al., Eq. 1-3).

    ``s = alpha * ||x_c||_2`` (global context embedding, Eq. 1); ``s_hat = sqrt(C) s / ||s||_2``
    (channel normalisation, Eq. 2); gate ``1 + tanh(gamma s_hat + beta)`` (Eq. 3). Initialised as in
    the paper, alpha = 1, gamma = 0, beta = 0, so the module starts as the identity.

    Args:
        channels: input channels C.
        mode: ``"l2"`` (paper default) or ``"l1"`` embedding.
        eps: added under both square roots (l2) or to the l1 norm, as in the authors' code.
        after_relu: ``"l1"`` only: the input is non-negative, so skip ``abs``.

    Differs from the paper: only the ``eps`` terms, placed as in the authors' code. The embedding is
    computed in float32 for float16/bfloat16 inputs (a sum of squares over a map overflows float16).
    No reference implementation is installed; the tests transcribe the paper's equations instead.
    """

    def __init__(self, channels: int, *, mode: str = "l2", eps: float = 1e-5, after_relu: bool = False):
        super().__init__()
        check_positive_int("channels", channels)
        if mode not in ("l2", "l1"):
            raise ValueError(f"mode must be 'l2' or 'l1', got {mode!r}")
        check_positive("eps", eps)
        self.mode, self.eps, self.after_relu = mode, float(eps), bool(after_relu)
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gate = Gate(_OnePlusTanh, kind="channel")

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype  # x^2 summed overflows fp16
        if self.mode == "l2":
            # ||x_c||_2 through vector_norm: one pass in backward, where pow(2).sum() takes three
            norm = torch.linalg.vector_norm(x, 2, dim=(2, 3), keepdim=True, dtype=acc)
            s = self.alpha * (norm.square() + self.eps).sqrt()
            # sqrt(C) / ||s||_2 == 1 / sqrt(mean_c s^2)
            s_hat = s * (s.pow(2).mean(1, keepdim=True) + self.eps).rsqrt()
        else:
            if self.after_relu:
                s = self.alpha * x.sum((2, 3), keepdim=True, dtype=acc)
            else:
                s = self.alpha * torch.linalg.vector_norm(x, 1, dim=(2, 3), keepdim=True, dtype=acc)
            s_hat = s / (s.abs().mean(1, keepdim=True) + self.eps)
        return self.gate(self.gamma * s_hat + self.beta).to(x.dtype)


@register(
    "srm",
    category="channel",
    paper="SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
    year=2019,
    url="https://arxiv.org/abs/1903.10829",
    notes="Std floored at sqrt(eps) and taken as 0 for a single pixel (no NaN at H=W=1); at batch 1 in "
    "training the BN falls back to its running statistics.",
)
class StyleRecalibration(ScalesInput, nn.Module):
    """Style-based Recalibration: ``y = x * sigmoid(BN(w_c . [mu_c, sigma_c]))`` (Lee et al., Eq. 1-5).

    Style pooling takes each channel's mean and standard deviation (Eq. 1-2); style integration is a
    channel-wise fully connected layer (a grouped conv1d with kernel 2: two weights per channel, no
    bias, Eq. 3), then BatchNorm (Eq. 4) and a sigmoid gate (Eq. 5). 4C parameters (2C CFC + 2C BN).

    Args:
        channels: input channels C.
        eps: floor of the variance, so the std of a constant channel (or a single pixel) has a finite
            gradient.
        gate_layer: gate (paper: sigmoid).

    Differs from the paper / authors' code: the std is unbiased as in the authors' code (``torch.std``)
    but floored at ``sqrt(eps)``, and is 0 (then floored) for H*W = 1 where the unbiased std is NaN;
    the CFC weights start at zero as in the authors' code; mean and std are computed in float32 for
    half-precision inputs. The BatchNorm is :class:`SafeBatchNorm2d`:
    at batch 1 in training (one value per channel, where ``nn.BatchNorm2d`` raises) it normalises with
    its running statistics instead.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5, gate_layer: LayerType = "sigmoid"):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive("eps", eps)
        self.eps = float(eps)
        self.cfc = nn.Conv1d(channels, channels, kernel_size=2, groups=channels, bias=False)
        nn.init.zeros_(self.cfc.weight)
        self.bn = SafeBatchNorm2d(channels)
        self.gate = Gate(gate_layer, kind="channel")

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        flat = x.reshape(b, c, h * w).to(acc)  # squared deviations summed over a map overflow float16
        mu = mean_pool(flat, -1)
        # Unbiased std as ||x - mu||_2 / sqrt(n - 1), floored at sqrt(eps) (= sqrt(max(var, eps))). Its gradient
        # w.r.t. mu is proportional to sum(x - mu) = 0, so mu is detached there: the same gradient, with two
        # full-size passes fewer in backward (and vector_norm's backward is one pass, pow(2).sum()'s three).
        std = torch.linalg.vector_norm(flat - mu.detach(), 2, dim=-1, keepdim=True) / math.sqrt(max(h * w - 1, 1))
        t = torch.cat([mu, std.clamp_min(math.sqrt(self.eps))], dim=-1).to(x.dtype)  # style pooling, (B, C, 2)
        z = self.cfc(t)  # style integration, (B, C, 1)
        return self.gate(self.bn(z.unsqueeze(-1)))


# FcaNet's frequency selections on a 7x7 DCT grid, best first (the paper's Fig. 5 / authors' code):
# (u, v) pairs for "top" (best single-frequency accuracy), "low" (zig-zag from (0,0)) and "bot" (worst).
_FCA_FREQUENCIES = {
    "top": (
        (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1),
        (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3),
    ),
    "low": (
        (0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4),
        (0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3),
    ),
    "bot": (
        (6, 1, 3, 3, 2, 4, 1, 2, 4, 4, 5, 1, 4, 6, 2, 5, 6, 1, 6, 2, 2, 4, 3, 3, 5, 5, 6, 2, 5, 5, 3, 6),
        (6, 4, 4, 6, 6, 3, 1, 4, 4, 5, 6, 5, 2, 2, 5, 1, 4, 3, 5, 0, 3, 1, 1, 2, 4, 2, 1, 1, 5, 3, 3, 3),
    ),
}


def dct_basis(u: int, v: int, height: int, width: int) -> torch.Tensor:
    """Orthonormal 2-D DCT-II basis ``B[i, j] = c_u cos(pi u (i + 1/2) / H) * c_v cos(pi v (j + 1/2) / W)``.

    ``c_0 = sqrt(1/N)``, ``c_k = sqrt(2/N)`` (FcaNet Eq. 1 with the authors' orthonormal scaling), so
    ``B^{0,0}`` pooling is ``sqrt(HW) * GAP``.
    """
    i = torch.arange(height, dtype=torch.float64)
    j = torch.arange(width, dtype=torch.float64)
    cu = math.sqrt((1 if u == 0 else 2) / height)
    cv = math.sqrt((1 if v == 0 else 2) / width)
    bu = cu * torch.cos(math.pi * u * (i + 0.5) / height)
    bv = cv * torch.cos(math.pi * v * (j + 0.5) / width)
    return torch.outer(bu, bv).float()


def _adaptive_pool_matrix(n_in: int | torch.Tensor, n_out: int, device: torch.device | None = None) -> torch.Tensor:
    """(n_out, n_in) matrix P with ``P @ v`` = ``adaptive_avg_pool1d(v, n_out)`` (PyTorch's bin edges).

    Bin i covers ``[floor(i n_in / n_out), ceil((i + 1) n_in / n_out))``. Built from tensor operations on
    ``n_in`` (no Python loop over it), so under ONNX tracing, where ``x.shape`` entries are tensors, the matrix
    follows the input size of a model exported with dynamic axes instead of being frozen at the traced size.
    """
    i = torch.arange(n_out, device=device)
    j = torch.arange(n_in, device=device)
    start = (i * n_in) // n_out
    end = ((i + 1) * n_in + n_out - 1) // n_out  # ceil without negative operands (exported floor division truncates)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(torch.float32) / (end - start)[:, None].to(torch.float32)


@register(
    "fca",
    category="channel",
    paper="FcaNet: Frequency Channel Attention Networks",
    year=2021,
    url="https://arxiv.org/abs/2012.11879",
    notes="Adaptive pooling to the DCT size is done with two small matrices (exact, and exports to ONNX "
    "for any H x W); channels not divisible by the number of frequencies are split as evenly as possible.",
)
class FrequencyChannelAttention(ScalesInput, nn.Module):
    """FcaNet multi-spectral channel attention: ``y = x * sigmoid(fc(Freq))`` (Qin et al., Eq. 6-7).

    The channels are split into n parts; part i is pooled with the 2-D DCT basis of frequency
    ``(u_i, v_i)`` (``Freq^i = sum_hw X^i_hw B^{u_i v_i}_hw``), and the concatenated vector goes through
    SE's excitation (two FC layers without bias, ReLU, sigmoid, reduction r = 16). Inputs of any
    H x W are average-pooled to the DCT size first, as the authors do for detection.

    Args:
        channels: input channels C.
        freq_sel: ``"top16"`` (paper default), or ``"top"``/``"low"``/``"bot"`` followed by 1 to 32.
        dct_size: DCT grid size (int or (h, w)), at least 7; frequencies are chosen on a 7x7 grid and
            scaled by ``dct_size // 7`` as in the authors' code (default 7).
        rd_ratio: 1/r of the excitation (paper: r = 16).
        rd_channels: hidden width; overrides ``rd_ratio``.
        rd_divisor: hidden width is rounded to a multiple of this (1: the paper's C/r).
        act_layer: excitation activation (paper: ReLU).
        gate_layer: gate (paper: sigmoid).

    Differs from the authors' code: channels need not be divisible by n (the first ``C mod n`` parts
    get one more channel; identical when divisible; with C < n only the first C frequencies are
    used); the ResNet models there use a DCT size equal to each stage's feature size (56/28/14/7),
    here one size for every input; adaptive pooling is a product with two pooling matrices (the same
    numbers as ``adaptive_avg_pool2d``, and ONNX-exportable when H, W are not multiples of the size), folded
    into the DCT weights for each input size (:meth:`frequency_weight`).
    """

    def __init__(
        self,
        channels: int,
        *,
        freq_sel: str = "top16",
        dct_size: int | tuple[int, int] = 7,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        kind, count = str(freq_sel)[:3], str(freq_sel)[3:]
        if kind not in _FCA_FREQUENCIES or not count.isdigit() or not 1 <= int(count) <= 32:
            raise ValueError(
                f"freq_sel must be 'top', 'low' or 'bot' followed by 1..32 (e.g. 'top16'), got {freq_sel!r}"
            )
        dct_h, dct_w = (dct_size, dct_size) if isinstance(dct_size, int) else tuple(dct_size)
        for value in (dct_h, dct_w):
            check_positive_int("dct_size", value)
            if value < 7:
                raise ValueError(
                    f"dct_size must be at least 7 (frequencies are chosen on a 7x7 grid), got {dct_size!r}"
                )
        self.dct_size = (dct_h, dct_w)
        us, vs = (seq[: int(count)] for seq in _FCA_FREQUENCIES[kind])
        self.frequencies = [(u * (dct_h // 7), v * (dct_w // 7)) for u, v in zip(us, vs, strict=True)]
        weight = torch.zeros(channels, dct_h, dct_w)
        parts = torch.arange(channels).tensor_split(len(self.frequencies))
        for (u, v), idx in zip(self.frequencies, parts, strict=True):
            weight[idx] = dct_basis(u, v, dct_h, dct_w)
        self.register_buffer("dct_weight", weight, persistent=False)  # fixed, rebuilt from the hyper-parameters
        self._weight_cache: dict[tuple, torch.Tensor] = {}
        hidden = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.act = create_act(act_layer)
        self.fc2 = nn.Linear(hidden, channels, bias=False)
        self.gate = Gate(gate_layer, kind="channel")

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if (h, w) == self.dct_size:
            return x
        ph = _adaptive_pool_matrix(h, self.dct_size[0]).to(x)
        pw = _adaptive_pool_matrix(w, self.dct_size[1]).to(x)
        return ph @ x @ pw.t()

    def frequency_weight(self, h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``(C, h, w)`` weights with ``Freq = sum_hw x * weight`` = the DCT of the pooled map (Eq. 6).

        Pooling and the DCT are both linear, so pooling to the DCT size then weighting equals one weighted sum
        with ``Ph^T B Pw``: a single elementwise pass instead of two small batched matmuls (about twice as fast
        forward+backward on CPU). Cached per size, dtype and device; built outside inference mode so a cache
        filled during validation can be saved for backward in training.
        """
        key = (h, w, dtype, device)
        if key not in self._weight_cache:
            with torch.inference_mode(False), torch.no_grad():
                weight = self.dct_weight.to(device, torch.float32)
                if (h, w) != self.dct_size:
                    ph = _adaptive_pool_matrix(h, self.dct_size[0]).to(device)
                    pw = _adaptive_pool_matrix(w, self.dct_size[1]).to(device)
                    weight = ph.t() @ weight @ pw
                self._weight_cache = {key: weight.to(dtype).contiguous()}  # one size at a time
        return self._weight_cache[key]

    def __getstate__(self) -> dict:
        # a pickled model (Ultralytics checkpoints, deepcopy for EMA) rebuilds the cache instead of storing it
        return {**super().__getstate__(), "_weight_cache": {}}

    def _traced_frequency_weight(self, h: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """:meth:`frequency_weight` as graph operations on the (traced) input size, for ONNX export.

        The cached weight is a constant of the traced size, so a model exported with dynamic axes would fail at
        any other size; here the pooling matrices are computed in the graph from ``h`` and ``w``.
        """
        ph = _adaptive_pool_matrix(h, self.dct_size[0], self.dct_weight.device)
        pw = _adaptive_pool_matrix(w, self.dct_size[1], self.dct_weight.device)
        return (ph.t() @ self.dct_weight.float() @ pw).to(dtype)

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if torch.jit.is_tracing():
            weight = self._traced_frequency_weight(h, w, x.dtype)
        else:
            weight = self.frequency_weight(h, w, x.dtype, x.device)
        freq = (x * weight).sum((2, 3))  # multi-spectral vector, Eq. 6
        return self.gate(self.fc2(self.act(self.fc1(freq)))).reshape(b, c, 1, 1)  # Eq. 7
