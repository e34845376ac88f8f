"""Bi-level routing attention: each region attends only to the few regions its coarse affinity ranks highest.

Zhu, Wang, Ke, Zhang & Lau, "BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023,
https://arxiv.org/abs/2303.08810 (official code: https://github.com/rayleizhu/BiFormer,
``ops/bra_legacy.py``, ``BiLevelRoutingAttention`` with ``auto_pad=True``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention._base import check_divisible, check_memory_limit, check_odd_kernel, check_positive_int
from attnyolo.attention.self_attention import DEFAULT_MEMORY_LIMIT_MB, SoftmaxGate, softmax_attention
from attnyolo.registry import register


def _regions(t: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, H, W, C)`` with H, W multiples of n -> ``(B, n², H/n · W/n, C)``, regions row-major."""
    b, h, w, c = t.shape
    t = t.reshape(b, n, h // n, n, w // n, c).transpose(2, 3)
    return t.reshape(b, n * n, (h // n) * (w // n), c)


@register(
    "biformer",
    category="self_attention",
    paper="BiFormer: Vision Transformer with Bi-Level Routing Attention",
    year=2023,
    url="https://arxiv.org/abs/2303.08810",
    constraints="channels divisible by num_heads; topk <= n_win^2; memory: only when the weights are observed "
    "(hook on gate), B*heads*N*topk*N/n_win^2 entries must fit memory_limit_mb",
    reference="official code (bra_legacy BiLevelRoutingAttention, auto_pad=True), restated in "
    "tests/attention/test_efficient_attention.py",
    notes="The official defaults of BiFormer's models: n_win 7, topk 4 (stage 3), LCE kernel 5, qkv bias, "
    "logits scaled by qk_dim^-0.5 (the whole width, as the official code, not the head width). Hard routing "
    "(no routing weights multiplied in, the official default). Zero padding to whole regions as auto_pad.",
)
class BiLevelRoutingAttention(nn.Module):
    """BiFormer bi-level routing attention: each region attends to the tokens of its top-k regions.

    Region-to-region affinity ``A^r = Q^r (K^r)ᵀ`` of region-mean queries and keys; each region keeps its
    ``topk`` most related regions ``I^r``, then token attention of the region's queries to the gathered keys
    and values, plus a local context term ``LCE(V)``.

    The map is cut into ``n_win x n_win`` regions (zero-padded to whole regions). Memory: ``B · heads · N ·
    topk · N / n_win²`` weights (at 1x256x80x80 fp32, 8 heads, topk 4, padded to 84x84: 124 MiB when observed;
    ``O(N)`` through the fused kernel otherwise).

    Args:
        channels: input channels C (divisible by ``num_heads``).
        num_heads: heads (BiFormer: width / 32; official default 8).
        n_win: regions per side S (paper: 7).
        topk: regions each region attends to (BiFormer stage 3: 4).
        side_dwconv: kernel of the LCE depth-wise conv on V (paper: 5; odd).
        qkv_bias: bias in the q/k/v projection (official: True).
        memory_limit_mb: refuse explicit attention weights above this many MiB (``None``: no limit).

    Differs from the official code: nothing with ``auto_pad=True`` (parameter names ``qkv``, ``wo``, ``lepe``;
    the official ``qkv.qkv`` is one ``nn.Linear`` here). ``gate`` sees the token-to-token weights
    ``(B, n², heads, N/n², topk · N/n²)``.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 8,
        n_win: int = 7,
        topk: int = 4,
        side_dwconv: int = 5,
        qkv_bias: bool = True,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_positive_int("n_win", n_win)
        check_positive_int("topk", topk)
        if topk > n_win * n_win:
            raise ValueError(f"topk={topk} exceeds the {n_win * n_win} regions of n_win={n_win}")
        check_odd_kernel("side_dwconv", side_dwconv)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        self.memory_limit_mb = memory_limit_mb
        self.num_heads, self.n_win, self.topk = num_heads, n_win, topk
        self.scale = channels**-0.5  # the official qk_dim ** -0.5
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.wo = nn.Linear(channels, channels)
        self.lepe = nn.Conv2d(channels, channels, side_dwconv, padding=side_dwconv // 2, groups=channels)
        self.gate = SoftmaxGate(kind="window")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        n, nh, d = self.n_win, self.num_heads, c // self.num_heads
        pad_h, pad_w = -h % n, -w % n
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, pad_w, 0, pad_h))  # (B, Hp, Wp, C)
        hp, wp = h + pad_h, w + pad_w
        q, k, v = self.qkv(xp).chunk(3, dim=-1)
        q_r, k_r, v_r = _regions(q, n), _regions(k, n), _regions(v, n)  # (B, n², w2, C)
        w2 = q_r.shape[2]

        # Region-level routing: indices of the topk regions by the affinity of region means.
        affinity = (q_r.mean(2) * self.scale) @ k_r.mean(2).transpose(-1, -2)  # (B, n², n²)
        idx = affinity.topk(self.topk, dim=-1).indices  # (B, n², topk)
        gather = idx[..., None, None].expand(-1, -1, -1, w2, c)

        def selected(t: torch.Tensor) -> torch.Tensor:  # (B, n², topk·w2, heads, d) -> heads first
            t = torch.gather(t.unsqueeze(1).expand(-1, n * n, -1, -1, -1), 2, gather)
            return t.reshape(b, n * n, self.topk * w2, nh, d).transpose(2, 3)

        q_h = q_r.reshape(b, n * n, w2, nh, d).transpose(2, 3)  # (B, n², heads, w2, d)
        o = softmax_attention(
            q_h,
            selected(k_r),
            selected(v_r),
            self.gate,
            scale=self.scale,
            memory_limit_mb=self.memory_limit_mb,
            owner=type(self).__name__,
        )
        o = o.transpose(2, 3).reshape(b, n, n, hp // n, wp // n, c).transpose(2, 3).reshape(b, hp, wp, c)
        lepe = self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.wo(o + lepe)[:, :h, :w].permute(0, 3, 1, 2)
