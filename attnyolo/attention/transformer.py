"""Transformer-style attention blocks over feature maps: DETR's encoder layer, YOLOv12's area attention, YOLOv10's PSA.

- DETR: Carion, Massa, Synnaeve, Usunier, Kirillov & Zagoruyko, "End-to-End Object Detection with
  Transformers", ECCV 2020, https://arxiv.org/abs/2005.12872 (official code: facebookresearch/detr).
- Area attention (A2): Tian, Ye & Doermann, "YOLOv12: Attention-Centric Real-Time Object Detectors", 2025,
  https://arxiv.org/abs/2502.12524 (Ultralytics' ``AAttn`` / ``ABlock``).
- Partial self-attention (PSA): Wang, Chen, Liu, Chen, Lin, Han & Ding, "YOLOv10: Real-Time End-to-End Object
  Detection", NeurIPS 2024, https://arxiv.org/abs/2405.14458 (Ultralytics' ``PSA``).

All three are global (or per-area) softmax attention: they run on the fused attention kernel (memory
``O(N)``) and materialise the weights through ``gate`` only when observed (see
:mod:`attnyolo.attention.self_attention`), checking ``memory_limit_mb`` first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention._attention import (
    DEFAULT_MEMORY_LIMIT_MB,
    CapturesAttention,
    SoftmaxGate,
    from_heads,
    softmax_attention,
)
from attnyolo.attention._base import (
    LayerType,
    check_divisible,
    check_memory_limit,
    check_positive,
    check_positive_int,
    check_unit_interval,
    create_act,
)
from attnyolo.registry import register


def sine_position_encoding(
    h: int, w: int, channels: int, *, temperature: float = 10000.0, device=None, dtype=torch.float32
) -> torch.Tensor:
    """DETR's 2D sine position encoding (``PositionEmbeddingSine(normalize=True)``) for any size: ``(C, H, W)``.

    The first ``C//2`` channels encode the row, the rest the column. Coordinates ``(i+1)/n · 2π``; feature
    ``j`` of an axis with ``m`` features is ``sin`` (even ``j``) or ``cos`` (odd ``j``) of
    ``coord / temperature^(2⌊j/2⌋/m)``.
    """
    eps = 1e-6  # DETR's, kept so the values match its encoder exactly

    def axis(n: int, m: int) -> torch.Tensor:  # (n, m)
        coord = torch.arange(1, n + 1, device=device, dtype=torch.float32) / (n + eps) * (2 * math.pi)
        j = torch.arange(m, device=device)
        freq = temperature ** (2 * torch.div(j, 2, rounding_mode="floor") / m)
        angle = coord[:, None] / freq
        return torch.where(j % 2 == 0, angle.sin(), angle.cos())

    my = channels // 2
    pos_y = axis(h, my).T[:, :, None].expand(my, h, w)
    pos_x = axis(w, channels - my).T[:, None, :].expand(channels - my, h, w)
    return torch.cat([pos_y, pos_x]).to(dtype)


# ---- DETR ---------------------------------------------------------------------------------------------------


@register(
    "detr",
    category="self_attention",
    paper="End-to-End Object Detection with Transformers",
    year=2020,
    url="https://arxiv.org/abs/2005.12872",
    constraints="channels divisible by num_heads; memory: only when the weights are observed (hook on gate / "
    "capture_attention), B*num_heads*(H*W)^2 entries must fit memory_limit_mb",
    reference="torch.nn.MultiheadAttention + DETR's post-norm layer with the same weights (tests)",
    notes="FFN width 4*C (ffn_ratio=4, as Ultralytics' AIFI; DETR's 2048 at C=256 is 8*C) and dropout 0 by "
    "default for a detector neck. Position encoding recomputed for every H, W.",
)
class DETREncoderLayer(CapturesAttention, nn.Module):
    """DETR transformer encoder layer over the flattened map, 2D sine positions added to queries and keys.

    ``z = LN(x + MHA(x + p, x + p, x))``, ``y = LN(z + FFN(z))`` (post-norm, as DETR). Attention memory at
    1x256x80x80 fp32: ``O(N)`` through the fused kernel; 8 heads x 156 MiB = 1.25 GiB for the explicit
    matrices when the weights are observed.

    Args:
        channels: model width C (divisible by ``num_heads``).
        num_heads: attention heads (DETR's 8).
        ffn_ratio: FFN hidden width as a multiple of C when ``dim_feedforward`` is not given.
        dim_feedforward: FFN hidden width (DETR: 2048 at C = 256).
        dropout: dropout in attention, residual branches and FFN (DETR's 0.1; 0 here).
        act_layer: FFN activation (DETR's ReLU).
        temperature: sine encoding temperature (DETR's 10000).
        memory_limit_mb: refuse explicit attention matrices above this many MiB (``None``: no limit).

    Differs from DETR: FFN width ``4 C`` and no dropout by default; separate q/k/v projections (the same
    maths as ``nn.MultiheadAttention``'s packed one); weights Xavier-uniform, biases zero.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 8,
        ffn_ratio: float = 4.0,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        act_layer: LayerType = "relu",
        temperature: float = 10000.0,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_positive("ffn_ratio", ffn_ratio)
        if dim_feedforward is not None:
            check_positive_int("dim_feedforward", dim_feedforward)
        check_unit_interval("dropout", dropout)
        check_positive("temperature", temperature)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        hidden = dim_feedforward or max(1, round(channels * ffn_ratio))
        self.num_heads, self.dropout, self.temperature = num_heads, dropout, temperature
        self.scale = (channels // num_heads) ** -0.5
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(channels, channels) for _ in range(3))
        self.out_proj = nn.Linear(channels, channels)
        self.linear1, self.linear2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)
        self.act = create_act(act_layer)
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.drop, self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.gate = SoftmaxGate(kind="self_attention")
        self.memory_limit_mb = memory_limit_mb
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj, self.linear1, self.linear2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, heads, N, d)
        return t.reshape(*t.shape[:2], self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        src = x.flatten(2).transpose(1, 2)  # (B, N, C)
        pos = sine_position_encoding(h, w, c, temperature=self.temperature, device=x.device, dtype=x.dtype)
        qk = src + pos.flatten(1).T
        q, k, v = self._heads(self.q_proj(qk)), self._heads(self.k_proj(qk)), self._heads(self.v_proj(src))
        o = softmax_attention(
            q,
            k,
            v,
            self.gate,
            scale=self.scale,
            dropout=self.dropout if self.training else 0.0,
            memory_limit_mb=self.memory_limit_mb,
            owner=type(self).__name__,
        )
        src = self.norm1(src + self.drop1(self.out_proj(o.transpose(1, 2).reshape(b, h * w, c))))
        src = self.norm2(src + self.drop2(self.linear2(self.drop(self.act(self.linear1(src))))))
        return src.transpose(1, 2).reshape(b, c, h, w)


# ---- Ultralytics blocks -------------------------------------------------------------------------------------


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> SiLU (or nothing), 'same' padding: Ultralytics' ``Conv`` layout."""

    def __init__(self, c1: int, c2: int, k: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, padding=k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c1, H, W) -> (B, c2, H, W)."""
        return self.act(self.bn(self.conv(x)))


class _AreaAttention(nn.Module):
    """YOLOv12 area attention: attention inside ``area`` consecutive runs of the row-major token sequence."""

    def __init__(self, channels: int, num_heads: int, area: int, memory_limit_mb: float | None):
        super().__init__()
        self.num_heads, self.area, self.memory_limit_mb = num_heads, area, memory_limit_mb
        self.head_dim = channels // num_heads
        inner = self.head_dim * num_heads
        self.qkv = ConvBNAct(channels, 3 * inner, act=False)  # per head: [q | k | v]
        self.proj = ConvBNAct(inner, channels, act=False)
        self.pe = ConvBNAct(inner, inner, 7, groups=inner, act=False)  # position information from v
        self.gate = SoftmaxGate(kind="window")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, _, h, w = x.shape
        n, nh, d = h * w, self.num_heads, self.head_dim
        q, k, v = self.qkv(x).reshape(b, nh, 3 * d, n).transpose(-1, -2).split(d, dim=-1)  # (B, heads, N, d)

        # Areas: `area` equal runs of tokens (horizontal strips when H divides); the last run is padded
        # with masked keys when N does not divide, so every area holds at least one real token.
        run = -(-n // self.area)
        runs = -(-n // run)
        pad = runs * run - n
        key_mask = None
        if pad:
            key_mask = torch.arange(runs * run, device=x.device).reshape(runs, run) < n
        q, k, vv = (F.pad(t, (0, 0, 0, pad)).reshape(b, nh, runs, run, d) for t in (q, k, v))
        o = softmax_attention(
            q,
            k,
            vv,
            self.gate,
            scale=d**-0.5,
            key_mask=key_mask,
            memory_limit_mb=self.memory_limit_mb,
            owner="AreaAttention",
        )
        o = o.reshape(b, nh, runs * run, d)[:, :, :n]
        return self.proj(from_heads(o, h, w) + self.pe(from_heads(v, h, w)))


@register(
    "ul_aattn",
    category="self_attention",
    paper="YOLOv12: Attention-Centric Real-Time Object Detectors",
    year=2025,
    url="https://arxiv.org/abs/2502.12524",
    constraints="num_heads <= channels; train mode needs B*H*W > 1 (BatchNorm); memory: only when the weights "
    "are observed, B*num_heads*(H*W)^2/area entries must fit memory_limit_mb",
    reference="ultralytics:ABlock (ultralytics.nn.modules.block.ABlock)",
    notes="Ultralytics needs H*W divisible by area; here the token sequence is padded to whole areas with masked "
    "keys (equal to Ultralytics whenever it divides). Defaults: head width 32 and mlp_ratio 1.2 as YOLOv12 "
    "(its n/s/m scales pass mlp_ratio=2.0), area=4 as YOLOv12 at P3/P4 (area=1 at P5).",
)
class AreaAttentionBlock(CapturesAttention, nn.Module):
    """YOLOv12's area-attention block (Ultralytics ``ABlock``): ``z = x + A2(x)``, ``y = z + MLP(z)``.

    ``A2`` is multi-head attention restricted to ``area`` runs of the flattened map, plus a 7x7 depthwise
    conv of the values as position information, then a 1x1 projection. Attention memory at 1x256x80x80
    fp32 (8 heads, area 4): ``O(N)`` through the fused kernel; 8 x 4 x 1600² floats = 312 MiB explicit.

    Args:
        channels: input channels C.
        num_heads: attention heads; ``None``: ``max(C // 32, 1)`` (YOLOv12's head width 32).
        area: number of areas (YOLOv12: 4 at P3/P4, 1 at P5; 1 = global attention).
        mlp_ratio: MLP hidden width relative to C (ABlock's 1.2).
        memory_limit_mb: refuse explicit attention matrices above this many MiB (``None``: no limit).

    Differs from Ultralytics: any ``H, W`` (masked padding of the last area); same parameter names, so
    an Ultralytics ``ABlock`` state dict loads directly.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int | None = None,
        area: int = 4,
        mlp_ratio: float = 1.2,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        num_heads = max(channels // 32, 1) if num_heads is None else num_heads
        check_positive_int("num_heads", num_heads)
        if num_heads > channels:
            raise ValueError(f"channels={channels} must be at least num_heads={num_heads}")
        check_positive_int("area", area)
        check_positive("mlp_ratio", mlp_ratio)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        hidden = max(1, int(channels * mlp_ratio))
        self.attn = _AreaAttention(channels, num_heads, area, memory_limit_mb)
        self.mlp = nn.Sequential(ConvBNAct(channels, hidden), ConvBNAct(hidden, channels, act=False))
        self.gate = self.attn.gate
        for m in self.modules():  # YOLOv12's init
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = x + self.attn(x)
        return x + self.mlp(x)


class _PSAttention(nn.Module):
    """YOLOv10's attention: keys/queries at half the head width, values at full width, + 3x3 dw conv of v."""

    def __init__(self, channels: int, num_heads: int, attn_ratio: float, memory_limit_mb: float | None):
        super().__init__()
        self.num_heads, self.memory_limit_mb = num_heads, memory_limit_mb
        self.head_dim = channels // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.qkv = ConvBNAct(channels, channels + 2 * self.key_dim * num_heads, act=False)  # per head: [q | k | v]
        self.proj = ConvBNAct(channels, channels, act=False)
        self.pe = ConvBNAct(channels, channels, 3, groups=channels, act=False)
        self.gate = SoftmaxGate(kind="self_attention")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        nh, kd = self.num_heads, self.key_dim
        qkv = self.qkv(x).reshape(b, nh, 2 * kd + self.head_dim, h * w).transpose(-1, -2)
        q, k, v = qkv.split([kd, kd, self.head_dim], dim=-1)  # (B, heads, N, .)
        o = softmax_attention(q, k, v, self.gate, scale=kd**-0.5, memory_limit_mb=self.memory_limit_mb, owner="PSA")
        return self.proj(from_heads(o, h, w) + self.pe(from_heads(v, h, w)))


@register(
    "ul_psa",
    category="self_attention",
    paper="YOLOv10: Real-Time End-to-End Object Detection",
    year=2024,
    url="https://arxiv.org/abs/2405.14458",
    constraints="int(channels*e) >= 2 and divisible by its head count max(int(channels*e)//64, 1); train mode "
    "needs B*H*W > 1 (BatchNorm); memory: only when the weights are observed, "
    "B*heads*(H*W)^2 entries must fit memory_limit_mb",
    reference="ultralytics:PSA (ultralytics.nn.modules.block.PSA)",
    notes="Ultralytics' PSA with c1 == c2 == channels; same parameter names, so its state dict loads directly.",
)
class PartialSelfAttention(CapturesAttention, nn.Module):
    """YOLOv10's partial self-attention (Ultralytics ``PSA``): attention and FFN on half of the channels.

    ``a, b = split(cv1(x))``; ``b = b + Attn(b)``; ``b = b + FFN(b)``; ``y = cv2([a, b])``. ``Attn`` uses
    ``max(c // 64, 1)`` heads of width 64, keys at half that width, plus a 3x3 depthwise conv of the
    values. Attention memory at 1x256x80x80 fp32 (c = 128, 2 heads): ``O(N)`` through the fused kernel;
    2 x 6400² floats = 312 MiB explicit.

    Args:
        channels: input and output channels C.
        e: fraction of channels that go through attention (YOLOv10's 0.5).
        memory_limit_mb: refuse explicit attention matrices above this many MiB (``None``: no limit).

    Same structure, initialisation and parameter names as Ultralytics' ``PSA``.
    """

    def __init__(self, channels: int, *, e: float = 0.5, memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB):
        super().__init__()
        check_positive_int("channels", channels)
        check_unit_interval("e", e)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        c = int(channels * e)
        if c < 2:
            raise ValueError(f"channels={channels} with e={e} leaves {c} attention channels; it needs at least 2")
        heads = max(c // 64, 1)
        if c % heads:
            raise ValueError(f"channels={channels} with e={e} gives {c} attention channels, not divisible by "
                             f"its {heads} heads of width 64")  # fmt: skip
        self.c = c
        self.cv1 = ConvBNAct(channels, 2 * c)
        self.cv2 = ConvBNAct(2 * c, channels)
        self.attn = _PSAttention(c, heads, 0.5, memory_limit_mb)
        self.ffn = nn.Sequential(ConvBNAct(c, 2 * c), ConvBNAct(2 * c, c, act=False))
        self.gate = self.attn.gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = b + self.attn(b)
        b = b + self.ffn(b)
        return self.cv2(torch.cat((a, b), 1))
