"""Deformable attention: keys and values sampled at learned offsets from a grid of reference points.

Xia, Pan, Song, Li & Huang, "Vision Transformer with Deformable Attention", CVPR 2022,
https://arxiv.org/abs/2201.00520 (official code: https://github.com/LeapLabTHU/DAT, ``DAttentionBaseline`` in
``models/dat_blocks.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention._base import (
    check_attention_memory,
    check_divisible,
    check_memory_limit,
    check_positive,
    check_positive_int,
)
from attnyolo.attention.self_attention import DEFAULT_MEMORY_LIMIT_MB, SoftmaxGate, _pair, softmax_attention
from attnyolo.registry import register


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (DAT's ``LayerNormProxy``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), LayerNorm over C at each position."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _grid_axis(size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel indices ``0..size-1`` of one axis, the ``align_corners=True`` grid unit ``2 / (size - 1)`` and whether
    the axis has extent (``size > 1``), as tensors built from the size (so an ONNX export keeps H, W dynamic).

    On a size-1 axis the unit is 2 and the extent 0: every sample falls on the only pixel anyway.
    """
    idx = torch.arange(size, dtype=like.dtype, device=like.device)
    last = idx[-1:]  # size - 1
    return idx, 2 / last.clamp(min=1), (last > 0).to(like.dtype)


@register(
    "dat",
    category="self_attention",
    paper="Vision Transformer with Deformable Attention",
    year=2022,
    url="https://arxiv.org/abs/2201.00520",
    constraints="channels divisible by num_heads, num_heads divisible by n_groups; memory: B*num_heads*H*W*Hk*Wk "
    "entries (Hk, Wk = H, W / stride) must fit memory_limit_mb",
    reference="official code (DAT v1 DAttentionBaseline, table position bias), restated in "
    "tests/attention/test_efficient_attention.py",
    notes="Defaults from DAT-T's deformable stages: 4 heads per offset group, stride 1, offset range factor 2, "
    "offset kernel 5 (stage 3). The position-bias table is learned at feat_size and sampled at any size (as in "
    "the official code, which fixes one size). A size-1 axis gets grid coordinate 0 and no offset along it "
    "(the official code divides by size - 1 there). Half-pixel reference points kept as the official code.",
)
class DeformableAttention(nn.Module):
    """DAT deformable attention: every query attends to keys sampled at learned offsets from a reference grid.

    The queries ``q = x W_q`` of each offset group go through a small network (depth-wise ``k x k`` conv with
    stride s, LayerNorm, GELU, 1x1 conv to 2 channels) giving one offset per reference point of an
    ``H/s x W/s`` grid, bounded by ``tanh`` to ``factor`` grid cells; ``x`` is bilinearly sampled at the shifted
    points, keys and values are projected from the samples, and every query attends to all sampled keys with
    a relative position bias read (bilinearly) from a learned table at the query-to-sample displacement.
    Attention memory at 1x256x80x80 fp32 (8 heads, stride 1): 8 x 6400² x 4 B = 1.22 GiB for the matrix, as
    much again for the position bias (the bias forces an explicit matrix); ``stride`` 2 divides it by 4.

    Args:
        channels: input channels C (divisible by ``num_heads``).
        num_heads: heads (DAT-T: 32 channels per head).
        n_groups: offset groups, each shared by ``num_heads / n_groups`` heads (DAT-T: 4 heads per group).
        stride: reference-point stride s (DAT-T deformable stages: 1).
        offset_range_factor: largest offset in reference-grid cells (DAT-T: 2).
        kernel_size: kernel of the offset network's depth-wise conv (DAT-T stage 3: 5).
        feat_size: ``(H, W)`` sizing the position-bias table (``2H-1 x 2W-1``; an int means square).
        memory_limit_mb: refuse attention matrices above this many MiB (``None``: no limit).

    Differs from the official code: see the spec's notes (parameter names ``conv_offset``, ``proj_q``,
    ``proj_k``, ``proj_v``, ``proj_out``, ``rpe_table`` as there).
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 8,
        n_groups: int = 2,
        stride: int = 1,
        offset_range_factor: float = 2.0,
        kernel_size: int = 5,
        feat_size: int | tuple[int, int] = 20,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_positive_int("n_groups", n_groups)
        check_divisible("num_heads", num_heads, "n_groups", n_groups)
        check_positive_int("stride", stride)
        check_positive("offset_range_factor", offset_range_factor)
        check_positive_int("kernel_size", kernel_size)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        fh, fw = _pair("feat_size", feat_size)
        self.num_heads, self.n_groups, self.stride = num_heads, n_groups, stride
        self.offset_range_factor = float(offset_range_factor)
        self.memory_limit_mb = memory_limit_mb
        self.scale = (channels // num_heads) ** -0.5
        gc = channels // n_groups
        pad = kernel_size // 2 if kernel_size != stride else 0
        self.conv_offset = nn.Sequential(
            nn.Conv2d(gc, gc, kernel_size, stride, pad, groups=gc),
            _ChannelLayerNorm(gc),
            nn.GELU(),
            nn.Conv2d(gc, 2, 1, bias=False),
        )
        self.proj_q = nn.Conv2d(channels, channels, 1)
        self.proj_k = nn.Conv2d(channels, channels, 1)
        self.proj_v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.rpe_table = nn.Parameter(torch.zeros(num_heads, 2 * fh - 1, 2 * fw - 1))
        nn.init.trunc_normal_(self.rpe_table, std=0.01)
        self.gate = SoftmaxGate(kind="self_attention")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        g, nh = self.n_groups, self.num_heads
        q = self.proj_q(x)
        offset = self.conv_offset(q.reshape(b * g, c // g, h, w))  # (B·g, 2 = (dy, dx), Hk, Wk)
        hk, wk = offset.shape[-2:]
        check_attention_memory(type(self).__name__, b * nh * h * w * hk * wk, x.dtype, self.memory_limit_mb)
        iy, unit_y, extent_y = _grid_axis(hk, x)
        ix, unit_x, extent_x = _grid_axis(wk, x)
        # Offsets bounded to `factor` reference cells (the official range 1 / (size - 1) per axis), none along
        # a size-1 axis; reference points at half-pixel positions (i + 0.5) / (size - 1) * 2 - 1, as DAT.
        offset_range = torch.cat([unit_y * extent_y, unit_x * extent_x]) / 2 * self.offset_range_factor
        offset = offset.tanh() * offset_range.reshape(1, 2, 1, 1)
        ref_y, ref_x = (iy + 0.5) * unit_y - 1, (ix + 0.5) * unit_x - 1  # 0 on a size-1 axis
        reference = torch.stack(torch.meshgrid(ref_y, ref_x, indexing="ij"), dim=-1)  # (Hk, Wk, 2 = (y, x))
        pos = offset.permute(0, 2, 3, 1) + reference  # (B·g, Hk, Wk, 2)
        sampled = F.grid_sample(
            x.reshape(b * g, c // g, h, w), pos.flip(-1), mode="bilinear", align_corners=True
        ).reshape(b, c, 1, hk * wk)
        k = self.proj_k(sampled).reshape(b, nh, c // nh, hk * wk).transpose(-1, -2)
        v = self.proj_v(sampled).reshape(b, nh, c // nh, hk * wk).transpose(-1, -2)
        q = q.reshape(b, nh, c // nh, h * w).transpose(-1, -2)

        # Position bias: the table read at (query - sample) / 2 in grid units, per group of heads.
        qy, unit_qy, extent_qy = _grid_axis(h, x)
        qx, unit_qx, extent_qx = _grid_axis(w, x)
        q_y, q_x = qy * unit_qy - extent_qy, qx * unit_qx - extent_qx  # -1..1, or 0 on a size-1 axis
        q_grid = torch.stack(torch.meshgrid(q_y, q_x, indexing="ij"), dim=-1).reshape(1, h * w, 1, 2)
        displacement = (q_grid - pos.reshape(b * g, 1, hk * wk, 2)) * 0.5  # (B·g, HW, Ns, 2)
        table = self.rpe_table.to(x.dtype).reshape(1, g, nh // g, *self.rpe_table.shape[-2:])
        table = table.expand(b, -1, -1, -1, -1).reshape(b * g, nh // g, *self.rpe_table.shape[-2:])
        bias = F.grid_sample(table, displacement.flip(-1), mode="bilinear", align_corners=True)
        bias = bias.reshape(b, nh, h * w, hk * wk)

        o = softmax_attention(q, k, v, self.gate, scale=self.scale, bias=bias)  # (B, heads, HW, d)
        return self.proj_out(o.transpose(-1, -2).reshape(b, c, h, w))
