"""Self-attention split between local windows and a coarse global view.

- HiLo: Pan, Cai & Zhuang, "Fast Vision Transformers with HiLo Attention", NeurIPS 2022 (LITv2),
  https://arxiv.org/abs/2205.13213 (official code: https://github.com/ziplab/LITv2, ``HiLo``).
- iRMB: Zhang, Li, Wang, Chen, Huang, Tai, Wang & Yang, "Rethinking Mobile Block for Efficient Attention-based
  Models", ICCV 2023 (EMO), https://arxiv.org/abs/2301.01146 (official code: https://github.com/zhangzjn/EMO).
- Cascaded group attention: Liu, Peng, Zheng, Yang, Hu & Yuan, "EfficientViT: Memory Efficient Vision
  Transformer with Cascaded Group Attention", CVPR 2023, https://arxiv.org/abs/2305.07027 (official code:
  https://github.com/microsoft/Cream/tree/main/EfficientViT, ``CascadedGroupAttention`` inside
  ``LocalWindowAttention``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention._base import (
    SafeBatchNorm2d,
    check_divisible,
    check_memory_limit,
    check_odd_kernel,
    check_positive,
    check_positive_int,
    check_unit_interval,
    create_act,
)
from attnyolo.attention._sliding import mean_pool_ceil
from attnyolo.attention.self_attention import DEFAULT_MEMORY_LIMIT_MB, SoftmaxGate, softmax_attention
from attnyolo.registry import register


def _split_windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``(B, H, W, C)`` with H, W multiples of ``ws`` -> ``(B, windows, ws*ws, C)``, windows row-major."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // ws, ws, w // ws, ws, c).transpose(2, 3)
    return x.reshape(b, (h // ws) * (w // ws), ws * ws, c)


def _merge_windows(x: torch.Tensor, h: int, w: int, ws: int) -> torch.Tensor:
    """Inverse of :func:`_split_windows`: ``(B, windows, ws*ws, C)`` -> ``(B, h, w, C)``."""
    b, c = x.shape[0], x.shape[-1]
    x = x.reshape(b, h // ws, w // ws, ws, ws, c).transpose(2, 3)
    return x.reshape(b, h, w, c)


# ---- HiLo ---------------------------------------------------------------------------------------------------


@register(
    "hilo",
    category="self_attention",
    paper="Fast Vision Transformers with HiLo Attention",
    year=2022,
    url="https://arxiv.org/abs/2205.13213",
    constraints="channels divisible by num_heads; memory: only when the Lo-Fi weights are observed (hook on "
    "gate), B*l_heads*N*N/window_size^2 entries must fit memory_limit_mb",
    reference="official code (LITv2 HiLo), restated in tests/attention/test_efficient_attention.py",
    notes="Any H, W: the Hi-Fi windows zero-pad the map to whole windows (as the official detection code) and "
    "the Lo-Fi average pool takes the mean of the real pixels of each partial window (identical when H, W "
    "are multiples of window_size). 1x1 projections as nn.Linear on channels-last features, as there.",
)
class HiLoAttention(nn.Module):
    """LITv2 HiLo: window attention for high frequencies, attention to a pooled map for low ones.

    ``(1-α)`` of the heads attend inside ``s x s`` windows (Hi-Fi), ``α`` of them attend from every position
    to the ``s x s`` average-pooled map (Lo-Fi); the two outputs are concatenated along channels.

    Attention memory at 1x256x80x80 fp32 (8 heads, α = 0.5, s = 2): Lo-Fi ``O(N)`` through the fused kernel,
    4 x 6400 x 1600 x 4 B = 156 MiB when its weights are observed; Hi-Fi 4 x 1600 x 4² entries (0.4 MiB).

    Args:
        channels: input channels C (divisible by ``num_heads``).
        num_heads: total heads (official default 8).
        window_size: window side s of Hi-Fi and pool size of Lo-Fi (paper: 2); 1 makes every head Lo-Fi.
        alpha: fraction of the heads given to Lo-Fi (paper: 0.5).
        qkv_bias: bias in the query/key/value projections.
        memory_limit_mb: refuse an explicit Lo-Fi attention matrix above this many MiB (``None``: no limit).

    Differs from the official code: any ``H, W`` (see the spec's notes). ``gate`` sees the Lo-Fi weights,
    ``local_gate`` the Hi-Fi ones (the same module as ``gate`` when ``alpha = 0`` leaves no Lo-Fi head).
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 8,
        window_size: int = 2,
        alpha: float = 0.5,
        qkv_bias: bool = False,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_positive_int("window_size", window_size)
        check_unit_interval("alpha", alpha)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        head_dim = channels // num_heads
        self.ws = window_size
        self.l_heads = num_heads if window_size == 1 else int(num_heads * alpha)
        self.h_heads = num_heads - self.l_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.memory_limit_mb = memory_limit_mb
        l_dim, h_dim = self.l_heads * head_dim, self.h_heads * head_dim
        if self.l_heads:
            self.l_q = nn.Linear(channels, l_dim, bias=qkv_bias)
            self.l_kv = nn.Linear(channels, 2 * l_dim, bias=qkv_bias)
            self.l_proj = nn.Linear(l_dim, l_dim)
        if self.h_heads:
            self.h_qkv = nn.Linear(channels, 3 * h_dim, bias=qkv_bias)
            self.h_proj = nn.Linear(h_dim, h_dim)
        self.gate = SoftmaxGate(kind="self_attention" if self.l_heads else "window")
        # With no Lo-Fi heads (alpha = 0) the Hi-Fi weights are the ones applied: `gate` must still see them.
        self.local_gate = SoftmaxGate(kind="window") if self.l_heads else self.gate

    def _hifi(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        ws, nh, d = self.ws, self.h_heads, self.head_dim
        pad_h, pad_w = -h % ws, -w % ws
        xp = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        qkv = self.h_qkv(_split_windows(xp, ws))  # (B, windows, ws², 3·h_dim)
        qkv = qkv.reshape(*qkv.shape[:2], ws * ws, 3, nh, d).permute(3, 0, 1, 4, 2, 5)  # 3, B, win, heads, ws², d
        o = softmax_attention(qkv[0], qkv[1], qkv[2], self.local_gate, scale=self.scale)
        o = o.transpose(2, 3).reshape(b, -1, ws * ws, nh * d)
        return self.h_proj(_merge_windows(o, h + pad_h, w + pad_w, ws)[:, :h, :w])

    def _lofi(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws, nh, d = self.ws, self.l_heads, self.head_dim
        q = self.l_q(x).reshape(b, h * w, nh, d).transpose(1, 2)
        if ws > 1:  # partial windows at the bottom/right average their real pixels
            x = mean_pool_ceil(x.permute(0, 3, 1, 2), ws).flatten(2).transpose(1, 2)  # (B, N/ws², C)
        kv = self.l_kv(x).reshape(b, -1, 2, nh, d).permute(2, 0, 3, 1, 4)
        o = softmax_attention(
            q, kv[0], kv[1], self.gate, scale=self.scale, memory_limit_mb=self.memory_limit_mb, owner="HiLoAttention"
        )
        return self.l_proj(o.transpose(1, 2).reshape(b, h, w, nh * d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = x.permute(0, 2, 3, 1)
        parts = ([self._hifi(x)] if self.h_heads else []) + ([self._lofi(x)] if self.l_heads else [])
        return torch.cat(parts, dim=-1).permute(0, 3, 1, 2)


# ---- EfficientViT cascaded group attention -----------------------------------------------------------------


class _ConvBN(nn.Sequential):
    """EfficientViT's ``Conv2d_BN``: conv without bias (``c``) then BatchNorm (``bn``), same state-dict keys."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
        self.bn = SafeBatchNorm2d(cout)
        nn.init.constant_(self.bn.weight, bn_weight_init)


def _offset_index(h: int, w: int, table_side: int, device) -> torch.Tensor:
    """EfficientViT's bias index for every pair of positions in an ``h x w`` window: ``|dy|·r + |dx|``.

    The official code numbers the offsets by first appearance over the pairs of an ``r x r`` window, which is
    exactly ``|dy|·r + |dx|`` (the first query, (0, 0), meets every offset in row-major order).
    """
    ys = torch.arange(h, device=device).repeat_interleave(w)
    xs = torch.arange(w, device=device).repeat(h)
    return (ys[:, None] - ys[None, :]).abs() * table_side + (xs[:, None] - xs[None, :]).abs()


@register(
    "cga",
    category="self_attention",
    paper="EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention",
    year=2023,
    url="https://arxiv.org/abs/2305.07027",
    constraints="channels divisible by num_heads; kernels, when given, one per head",
    reference="official code (LocalWindowAttention + CascadedGroupAttention), restated in "
    "tests/attention/test_efficient_attention.py",
    notes="Includes the EfficientViT block's residual around the token mixer (residual=True): its output "
    "projection's BatchNorm starts at weight 0, so the module starts as the identity instead of erasing the "
    "features. Per-head value width C / num_heads (the official attn_ratio = C / (key_dim * heads)). Maps "
    "smaller than a window attend over themselves (as the official code) with the biases of their offsets.",
)
class CascadedGroupAttention(nn.Module):
    """EfficientViT cascaded group attention in local windows (paper Eq. 1-2).

    The channels are split into ``h`` groups; head ``j`` attends over the ``w x w`` window to
    ``X̃_j = Attn(X_j W^Q_j, X_j W^K_j, X_j W^V_j)`` with ``X_j = X_j + X̃_{j-1}`` (cascade: each head
    refines the previous head's output), its queries passed through a depth-wise conv, its logits plus a
    learned bias per relative offset. The heads are concatenated, ReLU, projected by conv + BN. Maps are
    zero-padded to whole windows and cropped back, as in ``LocalWindowAttention``. Memory per window: ``h``
    matrices of ``w⁴`` entries (at 1x256x80x80 fp32, window 7: 4 x 144 windows x 49² x 4 B = 5.3 MiB).

    Args:
        channels: input channels C (divisible by ``num_heads``).
        num_heads: heads h (EfficientViT-M: 4).
        key_dim: query/key width per head (EfficientViT: 16).
        window_size: window side w (EfficientViT: 7).
        kernels: depth-wise kernel of each head's queries, one per head (odd; ``None``: EfficientViT's 5 for each).
        residual: add the input (the EfficientViT block's residual; see the spec's notes).

    Differs from the official code: see the spec's notes. ``gate`` runs once per head (a hook sees the
    heads' weights one after the other).
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 4,
        key_dim: int = 16,
        window_size: int = 7,
        kernels: tuple[int, ...] | None = None,
        residual: bool = True,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_positive_int("key_dim", key_dim)
        check_positive_int("window_size", window_size)
        kernels = (5,) * num_heads if kernels is None else tuple(kernels)
        if len(kernels) != num_heads:
            raise ValueError(f"kernels must give one kernel per head ({num_heads}), got {kernels!r}")
        for k in kernels:
            check_odd_kernel("kernels", k)
        self.num_heads, self.key_dim, self.window_size = num_heads, key_dim, window_size
        self.d = channels // num_heads
        self.scale = key_dim**-0.5
        self.residual = residual
        self.qkvs = nn.ModuleList(_ConvBN(self.d, 2 * key_dim + self.d) for _ in range(num_heads))
        self.dws = nn.ModuleList(_ConvBN(key_dim, key_dim, k, groups=key_dim) for k in kernels)
        self.proj = nn.Sequential(nn.ReLU(), _ConvBN(self.d * num_heads, channels, bn_weight_init=0.0))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.gate = SoftmaxGate(kind="window")

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """The official ``CascadedGroupAttention`` on ``(B', C, h, w)`` windows (h, w <= window_size)."""
        b, _, h, w = x.shape
        bias = self.attention_biases[:, _offset_index(h, w, self.window_size, x.device)].to(x.dtype)
        outs = []
        feat = None
        for i, (chunk, qkv, dw) in enumerate(zip(x.chunk(self.num_heads, dim=1), self.qkvs, self.dws, strict=True)):
            feat = chunk if i == 0 else feat + chunk
            q, k, v = qkv(feat).split([self.key_dim, self.key_dim, self.d], dim=1)
            q, k, v = dw(q).flatten(2).transpose(1, 2), k.flatten(2).transpose(1, 2), v.flatten(2).transpose(1, 2)
            feat = softmax_attention(q, k, v, self.gate, scale=self.scale, bias=bias[i]).transpose(1, 2)
            feat = feat.reshape(b, self.d, h, w)
            outs.append(feat)
        return self.proj(torch.cat(outs, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        ws = self.window_size
        if h <= ws and w <= ws:
            out = self._attend(x)
        else:
            pad_h, pad_w = -h % ws, -w % ws
            xw = _split_windows(F.pad(x, (0, pad_w, 0, pad_h)).permute(0, 2, 3, 1), ws)  # (B, win, ws², C)
            n_win = xw.shape[1]
            xw = xw.reshape(b * n_win, ws, ws, c).permute(0, 3, 1, 2)
            out = self._attend(xw).permute(0, 2, 3, 1).reshape(b, n_win, ws * ws, c)
            out = _merge_windows(out, h + pad_h, w + pad_w, ws)[:, :h, :w].permute(0, 3, 1, 2)
        return x + out if self.residual else out


# ---- EMO's inverted residual mobile block -------------------------------------------------------------------


def _conv_norm_act(cin: int, cout: int, kernel: int = 1, groups: int = 1, bias: bool = False, norm=False, act=None):
    """EMO's ``ConvNormAct`` (keys ``conv``, ``norm``, ``act``): conv, optional BatchNorm (eps 1e-6), activation."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2, groups=groups, bias=bias),
            norm=SafeBatchNorm2d(cout, eps=1e-6) if norm else nn.Identity(),
            act=create_act(act),
        )
    )


@register(
    "irmb",
    category="self_attention",
    paper="Rethinking Mobile Block for Efficient Attention-based Models",
    year=2023,
    url="https://arxiv.org/abs/2301.01146",
    constraints="channels divisible by dim_head (16), channels * exp_ratio divisible by channels / dim_head",
    reference="official code (EMO iRMB, attn_s=True, se_ratio=0, stride 1), restated in "
    "tests/attention/test_efficient_attention.py",
    notes="The whole block with its skip (C in = C out, stride 1), as the official iRMB; no SE (the official "
    "default se_ratio=0), no attn_pre variant, no drop-path. Padding to whole windows as the official code. "
    "dim_head 16 (EMO-1M's first stages; the class default 64 would refuse YOLO widths below 64).",
)
class InvertedResidualMobileBlock(nn.Module):
    """EMO iRMB: ``y = x + Proj(Z + DW-Conv(Z))``, ``Z = EW-MHSA(BN(x))``.

    EW-MHSA ("expanded window" attention): queries/keys from a 1x1 conv of the normalised input, values from a
    1x1 conv + ReLU expanded by ``exp_ratio``; attention inside windows of ``window_size x window_size``
    positions taken on a dilated grid, as the official code arranges them (``(h1 n1) -> n1 h1``: window
    ``(i, j)`` holds the positions congruent to ``(i, j)`` modulo the number of windows per side). Then a
    depth-wise conv + BN + SiLU with a skip, a 1x1 projection and the block's residual. Memory per window:
    ``heads · w⁴`` weights (at 1x256x80x80 fp32, 16 heads, w = 7: 144 windows, 21 MiB).

    Args:
        channels: input channels C (divisible by ``dim_head``).
        exp_ratio: width of the values and the depth-wise conv relative to C (official default 1.0).
        dim_head: query/key width per head (EMO-1M stages 1-2: 16; the official class default 64);
            heads = C / dim_head.
        window_size: window side w (official default 7).
        dw_ks: depth-wise kernel (official default 3; odd).
        qkv_bias: bias in the query/key and value convs (official default False).
        act_layer: activation of the value conv (official default ReLU).

    Differs from the official code: see the spec's notes (parameter names ``norm``, ``qk.conv``, ``v.conv``,
    ``conv_local.conv``/``.norm``, ``proj.conv`` as there).
    """

    def __init__(
        self,
        channels: int,
        *,
        exp_ratio: float = 1.0,
        dim_head: int = 16,
        window_size: int = 7,
        dw_ks: int = 3,
        qkv_bias: bool = False,
        act_layer: str = "relu",
    ):
        super().__init__()
        check_positive_int("dim_head", dim_head)
        check_divisible("channels", channels, "dim_head", dim_head)
        check_positive("exp_ratio", exp_ratio)
        check_positive_int("window_size", window_size)
        check_odd_kernel("dw_ks", dw_ks)
        self.num_heads, self.dim_head, self.window_size = channels // dim_head, dim_head, window_size
        self.dim_mid = int(channels * exp_ratio)
        if self.dim_mid < 1:
            raise ValueError(f"exp_ratio={exp_ratio} leaves no value channels for channels={channels}")
        check_divisible("channels * exp_ratio", self.dim_mid, "the number of heads", self.num_heads)
        self.scale = dim_head**-0.5
        self.norm = SafeBatchNorm2d(channels, eps=1e-6)
        self.qk = _conv_norm_act(channels, 2 * channels, bias=qkv_bias)
        self.v = _conv_norm_act(channels, self.dim_mid, bias=qkv_bias, act=act_layer)
        self.conv_local = _conv_norm_act(self.dim_mid, self.dim_mid, dw_ks, groups=self.dim_mid, norm=True, act="silu")
        self.proj = _conv_norm_act(self.dim_mid, channels)
        self.gate = SoftmaxGate(kind="window")

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws, nh, dh = self.window_size, self.num_heads, self.dim_head
        pad_h, pad_w = -h % ws, -w % ws
        xp = F.pad(x, (0, pad_w, 0, pad_h))
        n1, n2 = (h + pad_h) // ws, (w + pad_w) // ws
        # dilated windows, '(h1 n1) (w1 n2) -> (n1 n2) h1 w1': window (i, j) holds rows i, i + n1, i + 2 n1...
        xw = xp.reshape(b, c, ws, n1, ws, n2).permute(0, 3, 5, 1, 2, 4).reshape(b * n1 * n2, c, ws, ws)
        qk = self.qk(xw).reshape(-1, 2, nh, dh, ws * ws).permute(1, 0, 2, 4, 3)
        v = self.v(xw).reshape(-1, nh, self.dim_mid // nh, ws * ws).transpose(-1, -2)
        o = softmax_attention(qk[0], qk[1], v, self.gate, scale=self.scale)  # (B·n1·n2, heads, ws², dv)
        o = o.transpose(-1, -2).reshape(b, n1, n2, self.dim_mid, ws, ws)
        o = o.permute(0, 3, 4, 1, 5, 2).reshape(b, self.dim_mid, h + pad_h, w + pad_w)
        return o[:, :, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        z = self._attend(self.norm(x))
        return x + self.proj(z + self.conv_local(z))
