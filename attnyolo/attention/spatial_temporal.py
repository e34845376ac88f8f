"""Spatial-temporal attention over clips ``(B*T, C, H, W)``: positions attend across space and time.

- Space-time non-local block: Wang, Girshick, Gupta & He, "Non-local Neural Networks", CVPR 2018,
  https://arxiv.org/abs/1711.07971 (official code: https://github.com/facebookresearch/video-nonlocal-net).
- Divided space-time attention: Bertasius, Wang & Torresani, "Is Space-Time Attention All You Need for Video
  Understanding?" (TimeSformer), ICML 2021, https://arxiv.org/abs/2102.05095
  (official code: https://github.com/facebookresearch/TimeSformer).

Clips are stacked as in :mod:`attnyolo.attention.temporal`: frame ``t`` of clip ``b`` is batch row ``b*T + t``.
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._attention import DEFAULT_MEMORY_LIMIT_MB, CapturesAttention, SoftmaxGate, multi_head_attention
from attnyolo.attention._base import check_divisible, check_memory_limit, check_positive_int
from attnyolo.attention.nonlocal_family import NonLocal
from attnyolo.attention.temporal import check_clip_batch, check_frames, to_clips
from attnyolo.registry import register


@register(
    "stnl",
    category="spatial_temporal",
    paper="Non-local Neural Networks",
    year=2018,
    url="https://arxiv.org/abs/1711.07971",
    needs_frames=True,
    reference="attnyolo `nonlocal` on the clip's frames tiled side by side (tests); timm:NonLocalAttn for T=1",
    constraints=(
        "batch divisible by frames; memory: O(T*H*W) through the fused attention kernel; only when the weights "
        "are observed (hook on gate / capture_attention), B*(T*H*W)*(T*H*W/4 if sub_sample else T*H*W) entries "
        "must fit memory_limit_mb"
    ),
    notes=(
        "The paper's space-time embedded Gaussian block: one softmax over all T*H*W positions of a clip. "
        "sub_sample (on by default, as in the official video code) max-pools phi and g 2x2 in space only."
    ),
)
class SpaceTimeNonLocal(NonLocal):
    """Space-time non-local block: the embedded Gaussian block over all ``T·H·W`` positions of each clip.

    Same computation as :class:`~attnyolo.attention.nonlocal_family.NonLocal` (``θ, φ, g`` 1x1x1 convs, softmax
    over every position of the clip, ``W`` + zero-init BatchNorm, residual), with the tokens of a clip's ``T``
    frames attended jointly; clips never mix.

    Differences from the paper: sub-sampling (default on, as in the official video code's ``USE_MAXPOOL``)
    pools ``φ(x)`` and ``g(x)`` 2x2 in space after the convs as the paper describes (the official code pools the
    input before them); ``ceil_mode`` keeps odd sizes working. No logit scaling by default (the paper's
    equation; the official code scales by the inner width^-0.5, ``use_scale`` scales by ``C^-0.5``).

    Attention memory: ``O(T·H·W)`` through the fused kernel; when the weights are observed (hook on ``gate``,
    ``capture_attention``) ``B · (T·H·W) · (T·H·W/4)`` entries (``(T·H·W)²`` without sub-sampling), i.e.
    ``T²`` times the image block's: at 1x256x80x80 per frame, fp32, T=4: 625 MiB sub-sampled (2.4 GiB
    without), above the default ``memory_limit_mb`` for T=8.

    Args:
        channels: input channels ``C``.
        frames: clip length ``T`` (required).
        rd_ratio: inner width as a fraction of ``C`` (paper: 1/2).
        rd_channels: explicit inner width; overrides ``rd_ratio``.
        rd_divisor: round the inner width to a multiple of this.
        use_scale: scale the logits by ``C^-0.5``.
        sub_sample: 2x2 spatial max-pool of ``φ`` and ``g`` (official video default: on).
        memory_limit_mb: refuse clips whose attention matrix would exceed this many MiB (``None``: no limit).
    """

    def __init__(
        self,
        channels: int,
        *,
        frames: int | None = None,
        rd_ratio: float = 1 / 2,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        use_scale: bool = False,
        sub_sample: bool = True,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        frames = check_frames(frames)
        super().__init__(
            channels,
            rd_ratio=rd_ratio,
            rd_channels=rd_channels,
            rd_divisor=rd_divisor,
            use_scale=use_scale,
            sub_sample=sub_sample,
            memory_limit_mb=memory_limit_mb,
        )
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B*T, C, H, W) -> (B*T, C, H, W): B clips of T = ``frames`` frames, frame t of clip b at row b*T + t."""
        check_clip_batch(x.shape[0], self.frames)
        return super().forward(x)


@register(
    "divided_st",
    category="spatial_temporal",
    paper="Is Space-Time Attention All You Need for Video Understanding?",
    year=2021,
    url="https://arxiv.org/abs/2102.05095",
    needs_frames=True,
    reference="torch.nn.MultiheadAttention with the same weights, once across frames, once within frames (tests)",
    constraints=(
        "channels divisible by heads; batch divisible by frames; memory: O(H*W) through the fused attention "
        "kernel; only when the spatial weights are observed (hook on gate / capture_attention), "
        "B*T*heads*(H*W)^2 entries must fit memory_limit_mb"
    ),
    notes=(
        "TimeSformer's divided space-time attention on a conv feature map (one token per position, C-dim): "
        "temporal attention (+ temporal_fc, zero-init as in the official code) then spatial attention, each "
        "pre-norm and residual. No MLP, class token or learned position embeddings (they fix the input size). "
        "The gate is the spatial attention; the temporal attention is `time_gate`."
    ),
)
class DividedSpaceTimeAttention(CapturesAttention, nn.Module):
    """Divided space-time attention: ``x ← x + FC(MSA_time(LN(x)))``, then ``x ← x + MSA_space(LN(x))``.

    First each position attends to itself in the other frames of its clip (``T`` tokens), then each frame's
    positions attend to each other (``H·W`` tokens), both with ``heads`` heads (paper Eq. 6-8 / Fig. 1).

    Differences from the paper's block: one token per feature-map position instead of per 16x16 patch; no
    class token, no MLP sub-layer, no learned space/time position embeddings (they would fix ``H, W, T``);
    the temporal branch's extra linear ``temporal_fc`` is zero-initialised as in the official code, so the
    temporal step starts as the identity (the spatial step does not).

    Attention memory: ``O(H·W)`` through the fused kernel; when observed, temporal ``B·H·W·heads·T²``, spatial
    ``B·T·heads·(H·W)²`` entries; at 1x256x80x80 per
    frame, fp32, 4 heads: 625 MiB per frame for the spatial step.

    Args:
        channels: input channels ``C`` (divisible by ``heads``).
        frames: clip length ``T`` (required).
        heads: attention heads (default 4).
        qkv_bias: bias in the query/key/value projections (TimeSformer: True).
        memory_limit_mb: refuse inputs whose spatial attention would exceed this many MiB (``None``: no limit).
    """

    def __init__(
        self,
        channels: int,
        *,
        frames: int | None = None,
        heads: int = 4,
        qkv_bias: bool = True,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        self.frames = check_frames(frames)
        check_positive_int("heads", heads)
        check_divisible("channels", channels, "heads", heads)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        self.heads, self.memory_limit_mb = heads, memory_limit_mb
        self.time_norm = nn.LayerNorm(channels)
        self.time_qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.time_gate = SoftmaxGate(kind="temporal")
        self.time_proj = nn.Linear(channels, channels)
        self.time_fc = nn.Linear(channels, channels)
        nn.init.zeros_(self.time_fc.weight)
        nn.init.zeros_(self.time_fc.bias)
        self.space_norm = nn.LayerNorm(channels)
        self.space_qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.gate = SoftmaxGate(kind="self_attention")
        self.space_proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B*T, C, H, W) -> (B*T, C, H, W): B clips of T = ``frames`` frames, frame t of clip b at row b*T + t."""
        clip = to_clips(x, self.frames)  # (B, C, T, H, W)
        b, c, t, h, w = clip.shape
        tokens = clip.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)  # a sequence per position
        attn = multi_head_attention(self.time_norm(tokens), self.time_qkv, self.time_proj, self.time_gate, self.heads)
        tokens = tokens + self.time_fc(attn)
        tokens = tokens.reshape(b, h * w, t, c).transpose(1, 2).reshape(b * t, h * w, c)  # a sequence per frame
        attn = multi_head_attention(
            self.space_norm(tokens),
            self.space_qkv,
            self.space_proj,
            self.gate,
            self.heads,
            memory_limit_mb=self.memory_limit_mb,
            owner=type(self).__name__,
        )
        tokens = tokens + attn
        return tokens.transpose(1, 2).reshape(b * t, c, h, w)
