"""Outlook attention: each position predicts, from its own feature alone, the attention inside its neighbourhood.

Yuan, Hou, Jiang, Feng & Yan, "VOLO: Vision Outlooker for Visual Recognition", TPAMI 2022,
https://arxiv.org/abs/2106.13112 (official code: https://github.com/sail-sg/volo; timm's
``timm.models.volo.OutlookAttention`` is the same layer and is the tests' reference).
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import check_divisible, check_odd_kernel, check_positive_int
from attnyolo.attention._sliding import fold_neighbourhoods, mean_pool_ceil, neighbourhoods
from attnyolo.attention.self_attention import SoftmaxGate
from attnyolo.registry import register


@register(
    "outlook",
    category="self_attention",
    paper="VOLO: Vision Outlooker for Visual Recognition",
    year=2022,
    url="https://arxiv.org/abs/2106.13112",
    constraints="channels divisible by num_heads",
    reference="timm:timm.models.volo.OutlookAttention (same weights, same outputs)",
    notes="The layer of VOLO's Outlooker (padding kernel_size // 2), without the block's norm, residual and MLP. "
    "Unfold/fold are written as pads and strided slices so the layer exports at ONNX opset 17 (F.fold needs "
    "opset 18). Default num_heads 4, which divides every YOLO width (multiples of 16); VOLO uses 32 channels per "
    "head (VOLO-D1: 6 heads at 192 channels), pass num_heads=C/32 for that.",
)
class OutlookAttention(nn.Module):
    """VOLO outlook attention: each position predicts the attention inside its ``k x k`` window.

    ``A_ij = softmax(reshape(W_A x̄_ij))`` (a ``k² x k²`` matrix per pooled position and head),
    ``Y = Fold(A · Unfold_k(x W_V))``.

    The weights come from a linear layer on the (``stride``-pooled) centre feature alone, no query-key dot
    product; the values of each ``k x k`` neighbourhood are mixed by them and folded back (overlapping
    outputs add up). Memory is linear: ``B · heads · N/s² · k⁴`` weights (at 1x256x80x80 fp32, 4 heads,
    k = 3, s = 2: 2 MiB).

    Args:
        channels: input channels C (divisible by ``num_heads``).
        num_heads: heads (VOLO: 32 channels per head, e.g. 6 at 192; default 4, see the spec's notes).
        kernel_size: neighbourhood side k (paper: 3; odd).
        stride: the weights are predicted on an ``s``-times pooled map (VOLO: 2); the output keeps the size.
        qkv_bias: bias in the value projection.

    Differs from timm: nothing (same parameter names ``v``, ``attn``, ``proj``; ``nn.Linear`` on
    channels-last features); padding is tied to ``kernel_size // 2``, as in every VOLO model.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 4,
        kernel_size: int = 3,
        stride: int = 2,
        qkv_bias: bool = False,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_odd_kernel("kernel_size", kernel_size)
        check_positive_int("stride", stride)
        self.num_heads, self.kernel_size, self.stride = num_heads, kernel_size, stride
        self.scale = (channels // num_heads) ** -0.5
        self.v = nn.Linear(channels, channels, bias=qkv_bias)
        self.attn = nn.Linear(channels, kernel_size**4 * num_heads)
        self.proj = nn.Linear(channels, channels)
        self.gate = SoftmaxGate(kind="window")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        nh, k, s = self.num_heads, self.kernel_size, self.stride
        v = neighbourhoods(self.v(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), k, s)  # (B, C, k², ⌈H/s⌉, ⌈W/s⌉)
        oh, ow = v.shape[-2:]
        v = v.reshape(b, nh, c // nh, k * k, oh * ow).permute(0, 1, 4, 3, 2)  # (B, heads, n, k², d)
        logits = self.attn(mean_pool_ceil(x, s).permute(0, 2, 3, 1))  # (B, oh, ow, k⁴·heads)
        logits = logits.reshape(b, oh * ow, nh, k * k, k * k).transpose(1, 2)
        out = self.gate(logits * self.scale) @ v  # (B, heads, n, k², d)
        out = out.permute(0, 1, 4, 3, 2).reshape(b, c, k * k, oh, ow)
        out = fold_neighbourhoods(out, h, w, k, s)
        return self.proj(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
