"""Contextual Transformer (CoT) block: self-attention whose local attention matrix is predicted from the
query and a static context of its neighbourhood.

Li, Yao, Pan & Mei, "Contextual Transformer Networks for Visual Recognition", TPAMI 2022,
https://arxiv.org/abs/2107.12292 (official code: https://github.com/JDAI-CV/CoTNet, ``CotLayer``).

Public re-implementations to avoid: External-Attention-pytorch's ``CoTAttention`` replaces the local
aggregation by a softmax over all positions of a k²-averaged map, which is not the paper's operator.
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import Gate, SafeBatchNorm2d, check_divisible, check_odd_kernel, check_positive_int
from attnyolo.attention._sliding import neighbourhoods
from attnyolo.registry import register


@register(
    "cot",
    category="self_attention",
    paper="Contextual Transformer Networks for Visual Recognition",
    year=2022,
    url="https://arxiv.org/abs/2107.12292",
    constraints="channels divisible by share_planes (8) and by the key conv's 4 groups",
    reference="official code (CotLayer, its CUDA local aggregation restated as a loop), restated in "
    "tests/attention/test_efficient_attention.py",
    notes="The official local aggregation is a CuPy CUDA kernel; here a gather of the k x k neighbourhoods "
    "(zero padding, the same sums), so it runs on CPU and exports to ONNX.",
)
class ContextualTransformer(nn.Module):
    """CoT: local attention kernels predicted from the query and its static context.

    Static context ``K¹ = ReLU(BN(Conv_kxk(x)))``; local attention ``A = GN(W_δ ReLU(BN(W_θ [K¹; x])))`` (one
    ``k x k`` kernel per position and channel group); dynamic context ``K² = A ⊛ BN(Conv1x1(x))``; output the
    SK-style fusion of ``K¹`` and ``SiLU(BN(K²))`` (the official ``CotLayer``).

    ``C / share_planes`` kernels are predicted per position; channel ``c`` uses kernel ``c mod (C / share_planes)``,
    as the official aggregation kernel indexes them. Memory: the predicted kernels,
    ``B · k² · C/8 · N`` values (at 1x256x80x80 fp32: 7 MiB), and the gathered neighbourhoods, ``k²`` maps.

    Args:
        channels: input channels C (divisible by 8).
        kernel_size: neighbourhood side k (paper: 3; odd).
        share_planes: channels sharing one predicted kernel (paper: 8).
        factor: width reduction of the attention embedding (paper: 2).
        radix: branches fused at the end (K¹ and K²; paper: 2).
        reduction_factor: width reduction of the fusion's SE (paper: 4, never below 32 channels).

    Differs from the official code: nothing in the numbers (parameter names ``key_embed``, ``embed``,
    ``conv1x1``, ``bn``, ``se`` as there). ``gate`` sees the local attention kernels ``A``,
    ``radix_gate`` the fusion weights.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 3,
        share_planes: int = 8,
        factor: int = 2,
        radix: int = 2,
        reduction_factor: int = 4,
    ):
        super().__init__()
        check_odd_kernel("kernel_size", kernel_size)
        for name, value in (("share_planes", share_planes), ("factor", factor), ("reduction_factor", reduction_factor)):
            check_positive_int(name, value)
        if radix != 2:
            raise ValueError(f"radix must be 2 (the two contexts K¹ and K²), got {radix!r}")
        check_positive_int("channels", channels)
        check_divisible("channels", channels, "the key conv's groups", 4)
        check_divisible("channels", channels, "share_planes", share_planes)
        if channels < factor:
            raise ValueError(f"channels={channels} must be at least factor={factor}")
        c, k2 = channels, kernel_size * kernel_size
        self.kernel_size, self.groups, self.radix = kernel_size, c // share_planes, radix
        self.key_embed = nn.Sequential(
            nn.Conv2d(c, c, kernel_size, padding=kernel_size // 2, groups=4, bias=False),
            SafeBatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.embed = nn.Sequential(
            nn.Conv2d(2 * c, c // factor, 1, bias=False),
            SafeBatchNorm2d(c // factor),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // factor, k2 * self.groups, 1),
            nn.GroupNorm(self.groups, k2 * self.groups),
        )
        self.conv1x1 = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), SafeBatchNorm2d(c))
        self.bn = SafeBatchNorm2d(c)
        self.act = nn.SiLU(inplace=True)
        attn_chs = max(c * radix // reduction_factor, 32)
        self.se = nn.Sequential(
            nn.Conv2d(c, attn_chs, 1),
            SafeBatchNorm2d(attn_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(attn_chs, radix * c, 1),
        )
        self.gate = Gate("identity", kind="local")
        self.radix_gate = Gate(lambda: nn.Softmax(dim=2), kind="branch", layout="CK")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        k2, g = self.kernel_size**2, self.groups
        static = self.key_embed(x)  # K¹
        kernels = self.gate(self.embed(torch.cat([x, static], dim=1)).reshape(b, 1, g, k2, h, w))
        values = neighbourhoods(self.conv1x1(x), self.kernel_size)  # (B, C, k², H, W)
        dynamic = (values.reshape(b, c // g, g, k2, h, w) * kernels).sum(dim=3).reshape(b, c, h, w)
        dynamic = self.act(self.bn(dynamic))  # K²
        fused = self.se((dynamic + static).mean(dim=(2, 3), keepdim=True)).reshape(b, c, self.radix)
        weights = self.radix_gate(fused)
        return dynamic * weights[..., 0, None, None] + static * weights[..., 1, None, None]
