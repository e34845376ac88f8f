"""Axial attention: multi-head self-attention along the height axis, then along the width axis.

- Ho, Kalchbrenner, Weissenborn & Salimans, "Axial Attention in Multidimensional Transformers", 2019,
  https://arxiv.org/abs/1912.12180; the block is ``AxialImageTransformer``'s (lucidrains/axial-attention, the
  implementation community YOLO configs import), one layer of depth.
- The same row/column factorisation is the axial-attention layer of Axial-DeepLab (Wang et al., ECCV 2020,
  https://arxiv.org/abs/2003.07853), there with position-sensitive terms.

Attention over ``N = H*W`` positions along one axis costs ``B*W*heads*H^2 + B*H*heads*W^2`` weights instead of
``B*heads*(H*W)^2``: at 1x256x80x80 with 8 heads, 2 x 26 MiB instead of 1.25 GiB.
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import check_divisible, check_memory_limit, check_positive_int
from attnyolo.attention.self_attention import DEFAULT_MEMORY_LIMIT_MB, CapturesAttention, SoftmaxGate, softmax_attention
from attnyolo.registry import register


class _ChannelLayerNorm(nn.Module):
    """LayerNorm over channels of a ``(B, C, H, W)`` map, ``eps`` added to the (population) std."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), normalised over C at each position."""
        std = torch.var(x, dim=1, unbiased=False, keepdim=True).sqrt()
        mean = torch.mean(x, dim=1, keepdim=True)
        return (x - mean) / (std + self.eps) * self.g + self.b


class _AxisAttention(nn.Module):
    """Pre-norm multi-head self-attention along one axis of ``(B, C, H, W)`` (``axis=2``: H, ``3``: W)."""

    def __init__(self, channels: int, heads: int, dim_heads: int, axis: int):
        super().__init__()
        hidden = heads * dim_heads
        self.axis, self.heads, self.dim_heads = axis, heads, dim_heads
        self.norm = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, hidden, bias=False)
        self.to_kv = nn.Linear(channels, 2 * hidden, bias=False)
        self.to_out = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, gate: SoftmaxGate, memory_limit_mb: float | None, owner: str) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): each column (H axis) or row (W axis) a sequence."""
        b, c, h, w = x.shape
        # sequences along the axis, channels last: (B*W, H, C) for the H axis, (B*H, W, C) for W
        t = x.permute(0, 3, 2, 1) if self.axis == 2 else x.permute(0, 2, 3, 1)
        lead, n = t.shape[1], t.shape[2]
        t = self.norm(t.reshape(b * lead, n, c))
        q = self.to_q(t)
        k, v = self.to_kv(t).chunk(2, dim=-1)
        q, k, v = (z.reshape(b * lead, n, self.heads, self.dim_heads).transpose(1, 2) for z in (q, k, v))
        o = softmax_attention(q, k, v, gate, scale=self.dim_heads**-0.5, memory_limit_mb=memory_limit_mb, owner=owner)
        o = self.to_out(o.transpose(1, 2).reshape(b * lead, n, self.heads * self.dim_heads))
        o = o.reshape(b, lead, n, c)
        return o.permute(0, 3, 2, 1) if self.axis == 2 else o.permute(0, 3, 1, 2)


def _feed_forward(channels: int, mult: int) -> nn.Sequential:
    return nn.Sequential(
        _ChannelLayerNorm(channels),
        nn.Conv2d(channels, channels * mult, 3, padding=1),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(channels * mult, channels, 3, padding=1),
    )


@register(
    "axial",
    category="self_attention",
    paper="Axial Attention in Multidimensional Transformers",
    year=2019,
    url="https://arxiv.org/abs/1912.12180",
    constraints="channels divisible by heads (default 8) unless dim_heads is given; memory: only when the weights "
    "are observed (hook on gate / capture_attention), B*heads*(W*H^2 + H*W^2) entries must fit memory_limit_mb",
    reference="lucidrains/axial-attention AxialImageTransformer(depth=1), restated loop by loop in tests",
    notes="One layer (depth=1) of AxialImageTransformer with its defaults (8 heads, reversible, conv feed-forward "
    "x4, no positional embedding). `reversible` is computed as its forward equations (mean of the two streams), "
    "with ordinary autograd (no memory saving). The gate (softmax) runs twice per forward: H axis, then W axis.",
)
class AxialAttention(CapturesAttention, nn.Module):
    """Axial transformer block: attention along H, along W, then two conv feed-forwards, each residual.

    With ``reversible=False``: ``x += attn_H(x); x += attn_W(x); x += ff1(x); x += ff2(x)``. With the
    library's default ``reversible=True`` the two streams ``x1 = x2 = x`` go through
    ``y1 = x1 + attn_H(x2), y2 = x2 + attn_W(y1)``, ``z1 = y1 + ff1(y2), z2 = y2 + ff2(z1)`` and the output is
    ``(z1 + z2) / 2``. Attention is pre-norm (LayerNorm over channels), ``softmax(q kᵀ / sqrt(d)) v`` per head.

    Attention memory at 1x256x80x80 fp32: ``O(N)`` through the fused kernel; 2 x 26 MiB when observed.

    Args:
        channels: input channels C.
        heads: attention heads (library default 8).
        dim_heads: width per head (``None``: ``channels // heads``).
        ff_mult: hidden width of the conv feed-forwards as a multiple of C (library: 4).
        reversible: the library's reversible two-stream residual (default) or plain residuals.
        memory_limit_mb: refuse explicit attention matrices above this many MiB (``None``: no limit).
    """

    def __init__(
        self,
        channels: int,
        *,
        heads: int = 8,
        dim_heads: int | None = None,
        ff_mult: int = 4,
        reversible: bool = True,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("heads", heads)
        check_positive_int("ff_mult", ff_mult)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        if dim_heads is None:
            check_divisible("channels", channels, "heads", heads)
            dim_heads = channels // heads
        check_positive_int("dim_heads", dim_heads)
        self.reversible = bool(reversible)
        self.memory_limit_mb = memory_limit_mb
        self.gate = SoftmaxGate(kind="window")
        self.attn_h = _AxisAttention(channels, heads, dim_heads, 2)
        self.attn_w = _AxisAttention(channels, heads, dim_heads, 3)
        self.ff1 = _feed_forward(channels, ff_mult)
        self.ff2 = _feed_forward(channels, ff_mult)

    def _attend(self, attn: _AxisAttention, x: torch.Tensor) -> torch.Tensor:
        return attn(x, self.gate, self.memory_limit_mb, type(self).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if not self.reversible:
            x = x + self._attend(self.attn_h, x)
            x = x + self._attend(self.attn_w, x)
            x = x + self.ff1(x)
            return x + self.ff2(x)
        y1 = x + self._attend(self.attn_h, x)
        y2 = x + self._attend(self.attn_w, y1)
        z1 = y1 + self.ff1(y2)
        z2 = y2 + self.ff2(z1)
        return (z1 + z2) / 2
