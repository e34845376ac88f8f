"""Self-attention over the positions of a feature map: SAGAN, BoTNet, HaloNet and lambda layers.

- SAGAN: Zhang, Goodfellow, Metaxas & Odena, "Self-Attention Generative Adversarial Networks", ICML 2019,
  https://arxiv.org/abs/1805.08318.
- BoTNet: Srinivas, Lin, Parmar, Shlens, Abbeel & Vaswani, "Bottleneck Transformers for Visual Recognition",
  CVPR 2021, https://arxiv.org/abs/2101.11605 (``mhsa``: the layer of its Figure 4; ``bottleneck``: timm's
  ``BottleneckAttn``, the relative-logit version of the authors' gist).
- HaloNet: Vaswani, Ramachandran, Srinivas, Parmar, Hechtman & Shlens, "Scaling Local Self-Attention for
  Parameter Efficient Visual Backbones", CVPR 2021, https://arxiv.org/abs/2103.12731 (timm's ``HaloAttn``).
- Lambda layers: Bello, "LambdaNetworks: Modeling Long-Range Interactions Without Attention", ICLR 2021,
  https://arxiv.org/abs/2102.08602 (timm's ``LambdaLayer``).

All of them compute their softmax attention through :mod:`attnyolo.attention._attention` (fused kernel,
``O(N)`` memory, unless the weights are observed through ``gate``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention._attention import (
    DEFAULT_MEMORY_LIMIT_MB,
    CapturesAttention,
    SoftmaxGate,
    from_heads,
    softmax_attention,
    to_heads,
)
from attnyolo.attention._base import (
    check_attention_memory,
    check_divisible,
    check_memory_limit,
    check_odd_kernel,
    check_positive,
    check_positive_int,
    make_divisible,
    reduced_channels,
)
from attnyolo.registry import register

_BOT_PAPER = "Bottleneck Transformers for Visual Recognition"
_BOT_URL = "https://arxiv.org/abs/2101.11605"


# ---- shared machinery ---------------------------------------------------------------------------------------
# The attention core is attnyolo.attention._attention; its SoftmaxGate, CapturesAttention and softmax_attention
# stay importable from here (modules written against this file import them from it).


def _pair(name: str, value) -> tuple[int, int]:
    try:
        pair = (value, value) if isinstance(value, int) else tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair (H, W), got {value!r}")
    for v in pair:
        check_positive_int(name, v)
    return pair


def _relative_index(n_query: int, n_key: int, size: int, offset: int, device) -> torch.Tensor:
    """Row of a ``2*size-1`` relative-embedding table for each (query, key) pair along one axis.

    Index = key - query + offset, clipped to the table (distances beyond it share the edge embedding).
    """
    rel = torch.arange(n_key, device=device)[None, :] - torch.arange(n_query, device=device)[:, None]
    return (rel + offset).clamp(0, 2 * size - 2)


def _relative_logits(q: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, idx_h, idx_w) -> torch.Tensor:
    """Relative position logits ``q_ij · (r^h[i'-i] + r^w[j'-j])`` (Bello et al. 2019, as in BoTNet's gist).

    ``q: (..., Hq, Wq, d)``, ``idx_h: (Hq, Hk)``, ``idx_w: (Wq, Wk)`` -> ``(..., Hq*Wq, Hk*Wk)``.
    """
    logits_h = torch.einsum("...yxd,ykd->...yxk", q, rel_h[idx_h])
    logits_w = torch.einsum("...yxd,xkd->...yxk", q, rel_w[idx_w])
    out = logits_h[..., :, None] + logits_w[..., None, :]
    return out.reshape(*q.shape[:-3], q.shape[-3] * q.shape[-2], -1)


def _trunc_normal_fan_in(conv: nn.Conv2d) -> None:
    nn.init.trunc_normal_(conv.weight, std=conv.weight[0].numel() ** -0.5)


# ---- SAGAN --------------------------------------------------------------------------------------------------


@register(
    "sagan",
    category="self_attention",
    paper="Self-Attention Generative Adversarial Networks",
    year=2019,
    url="https://arxiv.org/abs/1805.08318",
    constraints="memory: only when the weights are observed (hook on gate / capture_attention), B*(H*W)^2 "
    "entries must fit memory_limit_mb; otherwise O(H*W) through the fused attention kernel",
    reference="paper Eq. 1-3 (official code: github.com/brain-research/self-attention-gan), re-derived in tests",
    notes="Value at C channels without an output conv (the first SAGAN version, as the issue asks); the released "
    "code uses C/2 values plus a 1x1 output conv. No spectral norm (that belongs to the GAN's training).",
)
class SAGANAttention(CapturesAttention, nn.Module):
    """SAGAN self-attention: ``y = γ · softmax(f(x)ᵀ g(x)) h(x) + x`` with γ starting at 0 (Eq. 1-3).

    Attention memory at 1x256x80x80 fp32: ``O(N)`` (a few MiB) through the fused kernel; 156 MiB for the
    explicit 6400² matrix when the weights are observed (hook on ``gate`` or ``capture_attention``).

    Args:
        channels: input channels C.
        rd_ratio: query/key width as a fraction of C (the paper's C/8).
        rd_channels: query/key width; overrides ``rd_ratio``.
        rd_divisor: round the query/key width to a multiple of this (1: the paper's plain C/8, at least 1).
        memory_limit_mb: refuse an explicit attention matrix above this many MiB (``None``: no limit).

    Differs from the paper: the value keeps C channels with no output 1x1 conv (the first SAGAN version;
    the released code uses C/2 values and an output conv), and no spectral normalisation. The logits are
    not scaled (as in the paper).
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 8,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        qk = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))  # starts as the identity (paper, Sec. 3)
        self.gate = SoftmaxGate(kind="self_attention")
        self.memory_limit_mb = memory_limit_mb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        _, _, h, w = x.shape
        q, k, v = to_heads(self.query(x), 1), to_heads(self.key(x), 1), to_heads(self.value(x), 1)
        o = softmax_attention(
            q, k, v, self.gate, scale=1.0, memory_limit_mb=self.memory_limit_mb, owner=type(self).__name__
        )
        return self.gamma * from_heads(o, h, w) + x


# ---- BoTNet -------------------------------------------------------------------------------------------------


@register(
    "mhsa",
    category="self_attention",
    paper=_BOT_PAPER,
    year=2021,
    url=_BOT_URL,
    constraints="channels divisible by num_heads; memory: only when the weights are observed (hook on gate / "
    "capture_attention), B*num_heads*(H*W)^2 entries must fit memory_limit_mb",
    reference="paper Figure 4, re-derived in the tests",
    notes="Figure 4's position encoding r = R_h + R_w (one learned row per height, one column per width) is "
    "learned at feat_size and linearly interpolated to other sizes. Logits scaled by d^-1/2 as in the authors' "
    "gist. For the relative-distance logits of the gist see `bottleneck`.",
)
class MHSA(CapturesAttention, nn.Module):
    """BoTNet multi-head self-attention (Figure 4): ``softmax(q kᵀ + q rᵀ) v``, ``r = R_h + R_w``.

    The content-position term uses the paper's 2D position encodings: ``R_h`` (one vector per row) plus
    ``R_w`` (one per column), per head. Since ``q kᵀ + q rᵀ = q (k + r)ᵀ``, the layer is plain attention
    with position-shifted keys and runs on the fused kernel (memory ``O(N)``).

    Attention memory at 1x256x80x80 fp32: ``O(N)`` through the fused kernel; 4 heads x 156 MiB = 625 MiB
    for the explicit matrices when the weights are observed.

    Args:
        channels: input channels C (divisible by ``num_heads``; head width ``C / num_heads``).
        num_heads: attention heads (the paper's 4).
        feat_size: ``(H, W)`` at which ``R_h``, ``R_w`` are learned (an int means square); other sizes
            interpolate them linearly (the paper fixes one size; 20 = P5 of a 640 input).
        qkv_bias: bias in the query/key/value 1x1 convs.
        memory_limit_mb: refuse explicit attention matrices above this many MiB (``None``: no limit).

    Differs from the paper: any input size (interpolated encodings); logits scaled by ``d^-1/2`` as in the
    authors' gist. No residual: like the paper's layer, the output replaces the input (the BoT block adds
    the shortcut around it).
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 4,
        feat_size: int | tuple[int, int] = 20,
        qkv_bias: bool = False,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        fh, fw = _pair("feat_size", feat_size)
        self.num_heads = num_heads
        dim_head = channels // num_heads
        self.scale = dim_head**-0.5
        self.query = nn.Conv2d(channels, channels, 1, bias=qkv_bias)
        self.key = nn.Conv2d(channels, channels, 1, bias=qkv_bias)
        self.value = nn.Conv2d(channels, channels, 1, bias=qkv_bias)
        self.rel_h = nn.Parameter(torch.empty(num_heads, dim_head, fh))
        self.rel_w = nn.Parameter(torch.empty(num_heads, dim_head, fw))
        self.gate = SoftmaxGate(kind="self_attention")
        self.memory_limit_mb = memory_limit_mb
        for conv in (self.query, self.key, self.value):
            _trunc_normal_fan_in(conv)
        nn.init.trunc_normal_(self.rel_h, std=self.scale)
        nn.init.trunc_normal_(self.rel_w, std=self.scale)

    def position_encoding(self, h: int, w: int) -> torch.Tensor:
        """``r = R_h + R_w`` at size ``(h, w)``: ``(num_heads, h*w, dim_head)``."""
        rel_h, rel_w = self.rel_h, self.rel_w
        # Traced for ONNX, h and w are graph values: always resize (the identity at the learned size) so a model
        # exported with dynamic axes follows the input size instead of freezing the branch taken at export.
        tracing = torch.jit.is_tracing()
        if tracing or h != rel_h.shape[-1]:
            rel_h = F.interpolate(rel_h, size=h, mode="linear", align_corners=False)
        if tracing or w != rel_w.shape[-1]:
            rel_w = F.interpolate(rel_w, size=w, mode="linear", align_corners=False)
        r = rel_h[..., :, None] + rel_w[..., None, :]  # (heads, d, h, w)
        return r.flatten(2).transpose(-1, -2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        _, _, h, w = x.shape
        q, k, v = (to_heads(conv(x), self.num_heads) for conv in (self.query, self.key, self.value))
        k = k + self.position_encoding(h, w).to(k.dtype)
        o = softmax_attention(
            q, k, v, self.gate, scale=self.scale, memory_limit_mb=self.memory_limit_mb, owner=type(self).__name__
        )
        return from_heads(o, h, w)


@register(
    "bottleneck",
    category="self_attention",
    paper=_BOT_PAPER,
    year=2021,
    url=_BOT_URL,
    constraints="channels divisible by num_heads; memory: B*num_heads*(H*W)^2 entries must fit memory_limit_mb",
    reference="timm:bottleneck (timm.layers.BottleneckAttn)",
    notes="timm needs feat_size == input size; here feat_size only sizes the relative tables, distances beyond "
    "it share the edge embedding (Shaw et al. 2018 clipping), so any H, W works. stride/dim_out dropped "
    "(shape-preserving).",
)
class BottleneckAttn(CapturesAttention, nn.Module):
    """BoTNet attention with relative position logits (the authors' gist; timm's ``BottleneckAttn``).

    ``softmax(d^-1/2 q kᵀ + rel(q)) v`` with ``rel(q)_{ij,i'j'} = q_ij · (r^h_{i'-i} + r^w_{j'-j})``.
    The relative bias forces an explicit ``N x N`` matrix per head: at 1x256x80x80 fp32, 4 heads x 156 MiB
    = 625 MiB per matrix (logits, bias and weights coexist in the forward pass).

    Args:
        channels: input channels C (divisible by ``num_heads``; value width ``C / num_heads`` per head).
        num_heads: attention heads (timm's 4).
        dim_head: query/key width per head; default ``make_divisible(C * qk_ratio, 8) / num_heads``.
        qk_ratio: query/key width relative to C when ``dim_head`` is not given.
        qkv_bias: bias in the fused qkv 1x1 conv.
        scale_pos_embed: scale the relative logits by ``d^-1/2`` too (timm's option).
        feat_size: ``(H, W)`` sizing the relative tables (``2*H-1``, ``2*W-1`` rows); larger inputs clip
            the relative distance to the table.
        memory_limit_mb: refuse attention matrices above this many MiB (``None``: no limit).

    Differs from timm: any input size (clipped relative distances instead of an assert on ``feat_size``);
    no ``stride``/``dim_out`` (the zoo is shape-preserving). At ``feat_size == (H, W)`` the outputs equal
    timm's with the same weights.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 4,
        dim_head: int | None = None,
        qk_ratio: float = 1.0,
        qkv_bias: bool = False,
        scale_pos_embed: bool = False,
        feat_size: int | tuple[int, int] = 20,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        if dim_head is not None:
            check_positive_int("dim_head", dim_head)
        check_positive("qk_ratio", qk_ratio)
        self.feat_size = _pair("feat_size", feat_size)
        self.num_heads = num_heads
        self.dim_head_qk = dim_head or make_divisible(channels * qk_ratio, divisor=8) // num_heads
        if self.dim_head_qk < 1:
            raise ValueError(f"qk_ratio={qk_ratio} leaves no query/key width per head; raise qk_ratio or dim_head")
        self.dim_head_v = channels // num_heads
        self.scale = self.dim_head_qk**-0.5
        self.scale_pos_embed = scale_pos_embed
        self.qkv = nn.Conv2d(channels, num_heads * (2 * self.dim_head_qk + self.dim_head_v), 1, bias=qkv_bias)
        self.rel_height = nn.Parameter(torch.empty(2 * self.feat_size[0] - 1, self.dim_head_qk))
        self.rel_width = nn.Parameter(torch.empty(2 * self.feat_size[1] - 1, self.dim_head_qk))
        self.gate = SoftmaxGate(kind="self_attention")
        self.memory_limit_mb = memory_limit_mb
        _trunc_normal_fan_in(self.qkv)
        nn.init.trunc_normal_(self.rel_height, std=self.scale)
        nn.init.trunc_normal_(self.rel_width, std=self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, _, h, w = x.shape
        nh, dqk = self.num_heads, self.dim_head_qk
        q, k, v = self.qkv(x).split([nh * dqk, nh * dqk, nh * self.dim_head_v], dim=1)
        q, k, v = to_heads(q, nh), to_heads(k, nh), to_heads(v, nh)
        check_attention_memory(type(self).__name__, b * nh * (h * w) ** 2, q.dtype, self.memory_limit_mb)
        (sh, sw), dev = self.feat_size, x.device
        idx_h, idx_w = _relative_index(h, h, sh, sh - 1, dev), _relative_index(w, w, sw, sw - 1, dev)
        bias = _relative_logits(q.reshape(b, nh, h, w, dqk), self.rel_height, self.rel_width, idx_h, idx_w)
        if self.scale_pos_embed:
            bias = bias * self.scale
        o = softmax_attention(q, k, v, self.gate, scale=self.scale, bias=bias, memory_limit_mb=None)
        return from_heads(o, h, w)


# ---- HaloNet ------------------------------------------------------------------------------------------------


@register(
    "halo",
    category="self_attention",
    paper="Scaling Local Self-Attention for Parameter Efficient Visual Backbones",
    year=2021,
    url="https://arxiv.org/abs/2103.12731",
    constraints="channels divisible by num_heads",
    reference="timm:halo (timm.layers.HaloAttn)",
    notes="timm asserts H, W divisible by block_size; here the map is zero-padded to whole blocks and cropped "
    "back, the padding treated exactly like the halo outside the image (zero keys and values, no mask, as "
    "in the paper and timm). stride/dim_out/avg_down dropped (shape-preserving).",
)
class HaloAttn(CapturesAttention, nn.Module):
    """Blocked local self-attention: each ``b x b`` query block attends to its ``(b+2h) x (b+2h)`` window.

    ``softmax(d^-1/2 q kᵀ + rel(q)) v`` inside each window, relative logits as in BoTNet. Attention memory
    is linear in ``N``: ``B · heads · N · (b+2h)²`` entries; at 1x256x80x80 fp32 (8 heads, b=8, h=3)
    39 MiB.

    Args:
        channels: input channels C (divisible by ``num_heads``).
        num_heads: attention heads (the paper's and timm's 8).
        dim_head: query/key width per head; default ``make_divisible(C * qk_ratio, 8) / num_heads``.
        block_size: query block side b (the paper's 8).
        halo_size: halo h around each block (the paper's 3).
        qk_ratio: query/key width relative to C when ``dim_head`` is not given.
        qkv_bias: bias in the q and kv 1x1 convs.
        scale_pos_embed: scale the relative logits by ``d^-1/2`` too (timm's option).

    Differs from timm: any ``H, W`` (zero-padded to whole blocks, cropped back); the kv projection lays
    out all keys then all values (timm interleaves them per head); no ``stride``.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 8,
        dim_head: int | None = None,
        block_size: int = 8,
        halo_size: int = 3,
        qk_ratio: float = 1.0,
        qkv_bias: bool = False,
        scale_pos_embed: bool = False,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_positive_int("block_size", block_size)
        if isinstance(halo_size, bool) or not isinstance(halo_size, int) or halo_size < 0:
            raise ValueError(f"halo_size must be a non-negative integer, got {halo_size!r}")
        check_divisible("channels", channels, "num_heads", num_heads)
        if dim_head is not None:
            check_positive_int("dim_head", dim_head)
        check_positive("qk_ratio", qk_ratio)
        self.num_heads = num_heads
        self.dim_head_qk = dim_head or make_divisible(channels * qk_ratio, divisor=8) // num_heads
        if self.dim_head_qk < 1:
            raise ValueError(f"qk_ratio={qk_ratio} leaves no query/key width per head; raise qk_ratio or dim_head")
        self.dim_head_v = channels // num_heads
        self.scale = self.dim_head_qk**-0.5
        self.scale_pos_embed = scale_pos_embed
        self.block_size, self.halo_size = block_size, halo_size
        self.win_size = block_size + 2 * halo_size
        self.q = nn.Conv2d(channels, num_heads * self.dim_head_qk, 1, bias=qkv_bias)
        self.kv = nn.Conv2d(channels, num_heads * (self.dim_head_qk + self.dim_head_v), 1, bias=qkv_bias)
        self.rel_height = nn.Parameter(torch.empty(2 * self.win_size - 1, self.dim_head_qk))
        self.rel_width = nn.Parameter(torch.empty(2 * self.win_size - 1, self.dim_head_qk))
        self.gate = SoftmaxGate(kind="window")
        std = channels**-0.5
        nn.init.trunc_normal_(self.q.weight, std=std)
        nn.init.trunc_normal_(self.kv.weight, std=std)
        nn.init.trunc_normal_(self.rel_height, std=self.scale)
        nn.init.trunc_normal_(self.rel_width, std=self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, _, h, w = x.shape
        nh, dqk, dv, bs, halo, win = (
            self.num_heads, self.dim_head_qk, self.dim_head_v, self.block_size, self.halo_size, self.win_size
        )  # fmt: skip
        ph, pw = -h % bs, -w % bs  # padding to whole blocks
        nbh, nbw = (h + ph) // bs, (w + pw) // bs

        q = F.pad(self.q(x), (0, pw, 0, ph)).reshape(b, nh, dqk, nbh, bs, nbw, bs)
        q = q.permute(0, 1, 3, 5, 4, 6, 2)  # (B, heads, nbh, nbw, bs, bs, d)

        # Each block's window: the block plus its halo, zero outside the image.
        kv = F.pad(self.kv(x), (halo, halo + pw, halo, halo + ph))
        kv = F.unfold(kv, kernel_size=win, stride=bs).reshape(b, -1, win * win, nbh * nbw)
        k, v = kv.split([nh * dqk, nh * dv], dim=1)
        k = k.reshape(b, nh, dqk, win * win, nbh * nbw).permute(0, 1, 4, 3, 2)  # (B, heads, blocks, win², d)
        v = v.reshape(b, nh, dv, win * win, nbh * nbw).permute(0, 1, 4, 3, 2)

        dev = x.device
        idx = _relative_index(bs, win, win, win - 1, dev)
        bias = _relative_logits(q.flatten(2, 3), self.rel_height, self.rel_width, idx, idx)
        if self.scale_pos_embed:
            bias = bias * self.scale
        q = q.reshape(b, nh, nbh * nbw, bs * bs, dqk)
        o = softmax_attention(q, k, v, self.gate, scale=self.scale, bias=bias)  # (B, heads, blocks, bs², dv)

        o = o.reshape(b, nh, nbh, nbw, bs, bs, dv).permute(0, 1, 6, 2, 4, 3, 5)
        return o.reshape(b, nh * dv, nbh * bs, nbw * bs)[:, :, :h, :w]


# ---- Lambda layers ------------------------------------------------------------------------------------------


@register(
    "lambda",
    category="self_attention",
    paper="LambdaNetworks: Modeling Long-Range Interactions Without Attention",
    year=2021,
    url="https://arxiv.org/abs/2102.08602",
    constraints="channels divisible by num_heads; train mode needs B*H*W > 1 (BatchNorm on queries and values)",
    reference="timm:lambda (timm.layers.LambdaLayer)",
    notes="Paper's scope r=23 (LambdaResNets); timm defaults to r=9. The position lambdas come from a 2D conv "
    "applied to each value channel (same weights and numbers as the paper's and timm's (r, r, 1) 3D conv). "
    "Only the lambda-convolution position variant (u=1); no global relative embeddings. The gate is the "
    "softmax over context positions that normalises the keys (lambda layers have no attention map).",
)
class LambdaLayer(nn.Module):
    """Lambda layer (multi-query, ``u = 1``): ``y_n = (λ^c + λ^p_n)ᵀ q_n`` per head (Bello 2021, Eq. 3-4).

    Content lambda ``λ^c = softmax(K)ᵀ V`` (keys normalised over positions); position lambdas ``λ^p_n`` by
    a learned ``r x r`` convolution over the values (the "lambda convolution"). No ``N x N`` matrix: at
    1x256x80x80 fp32 the position lambdas take ``N · k · v`` = 6400 x 16 x 64 floats = 25 MiB.

    Args:
        channels: input channels C (divisible by ``num_heads``; value width ``C / num_heads``).
        num_heads: query heads h (the paper's 4).
        dim_head: query/key depth k (the paper's 16); ``None`` uses ``make_divisible(C * qk_ratio, 8) / h``.
        r: lambda-convolution scope (odd; the paper's 23 x 23, timm's default 9).
        qk_ratio: query/key depth relative to C when ``dim_head`` is ``None``.
        qkv_bias: bias in the fused qkv 1x1 conv.

    Differs from timm: the default scope (paper's 23, timm 9); the lambda convolution is a 2D conv shared
    over value channels instead of an ``(r, r, 1)`` 3D conv (the same operation and weights).
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 4,
        dim_head: int | None = 16,
        r: int = 23,
        qk_ratio: float = 1.0,
        qkv_bias: bool = False,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_odd_kernel("r", r)
        if dim_head is not None:
            check_positive_int("dim_head", dim_head)
        check_positive("qk_ratio", qk_ratio)
        self.num_heads = num_heads
        self.dim_qk = dim_head or make_divisible(channels * qk_ratio, divisor=8) // num_heads
        if self.dim_qk < 1:
            raise ValueError(f"qk_ratio={qk_ratio} leaves no query/key depth per head; raise qk_ratio or dim_head")
        self.dim_v = channels // num_heads
        self.qkv = nn.Conv2d(channels, (num_heads + 1) * self.dim_qk + self.dim_v, 1, bias=qkv_bias)
        self.norm_q = nn.BatchNorm2d(num_heads * self.dim_qk)
        self.norm_v = nn.BatchNorm2d(self.dim_v)
        self.conv_lambda = nn.Conv2d(1, self.dim_qk, r, padding=r // 2)
        self.gate = SoftmaxGate(kind="spatial")
        _trunc_normal_fan_in(self.qkv)
        nn.init.trunc_normal_(self.conv_lambda.weight, std=self.dim_qk**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, _, h, w = x.shape
        nh, dk, dv = self.num_heads, self.dim_qk, self.dim_v
        q, k, v = self.qkv(x).split([nh * dk, dk, dv], dim=1)
        q = self.norm_q(q).reshape(b, nh, dk, h * w)
        v = self.norm_v(v)
        keys = self.gate(k.reshape(b, dk, h * w))  # normalised over context positions

        content_lambda = keys @ v.reshape(b, dv, h * w).transpose(1, 2)  # (B, k, v)
        position_lambdas = self.conv_lambda(v.reshape(b * dv, 1, h, w)).reshape(b, dv, dk, h * w)

        # y_n = (λ^c + λ^p_n)ᵀ q_n: one batched (heads x k) @ (k x v) product per position (a plain batched
        # matmul; the equivalent einsum over a position batch dimension ran as a per-position loop in backward)
        lambdas = position_lambdas.permute(0, 3, 2, 1) + content_lambda[:, None]  # (B, N, k, v)
        y = q.permute(0, 3, 1, 2) @ lambdas  # (B, N, heads, v)
        return y.permute(0, 2, 3, 1).reshape(b, nh * dv, h, w)
