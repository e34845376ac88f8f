"""Temporal attention over clips: the batch holds ``B`` clips of ``T`` consecutive frames, ``(B*T, C, H, W)``.

- TAM: Liu, Wang, Wu, Qian & Lu, "TAM: Temporal Adaptive Module for Video Recognition", ICCV 2021,
  https://arxiv.org/abs/2005.06803 (official code: https://github.com/liu-zhy/temporal-adaptive-module).
- Temporal multi-head self-attention: scaled dot-product attention (Vaswani et al., "Attention Is All You
  Need", NeurIPS 2017, https://arxiv.org/abs/1706.03762) across the frames at each position.
- GLTR: Li, Wang, Tian, Gao & Zhang, "Global-Local Temporal Representations For Video Person
  Re-Identification", ICCV 2019, https://arxiv.org/abs/1908.10049.

Frame ``t`` of clip ``b`` is batch row ``b*T + t`` (clips are contiguous, the layout of TSN/TSM/TAM code).
Every module takes ``frames=T`` and never mixes information between clips.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention._attention import CapturesAttention, SoftmaxGate, multi_head_attention, softmax_attention
from attnyolo.attention._base import (
    Gate,
    LayerType,
    SafeBatchNorm1d,
    check_divisible,
    check_odd_kernel,
    check_positive,
    check_positive_int,
    create_act,
    reduced_channels,
)
from attnyolo.registry import register


def check_frames(frames) -> int:
    """``frames`` (the clip length ``T``) is required and a positive integer."""
    if frames is None:
        raise ValueError("frames (the clip length T) is required: inputs are clips (B*T, C, H, W)")
    check_positive_int("frames", frames)
    return frames


def check_clip_batch(batch: int, frames: int) -> None:
    """The batch must hold whole clips of ``frames`` frames."""
    if batch % frames:
        raise ValueError(
            f"frames={frames} must divide the batch size {batch}: inputs are clips stacked as (B*T, C, H, W)"
        )


def to_clips(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B*T, C, H, W)`` -> ``(B, C, T, H, W)``, checking that the batch holds whole clips."""
    bt, c, h, w = x.shape
    check_clip_batch(bt, frames)
    return x.reshape(bt // frames, frames, c, h, w).transpose(1, 2)


def from_clips(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B*T, C, H, W)``."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """Vaswani et al.'s position encoding ``(length, dim)``: sin on even, cos on odd features."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / max(dim, 1)))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


@register(
    "tam",
    category="temporal",
    paper="TAM: Temporal Adaptive Module for Video Recognition",
    year=2021,
    url="https://arxiv.org/abs/2005.06803",
    needs_frames=True,
    reference="official liu-zhy/temporal-adaptive-module ops/temporal_module.py TAM, re-derived in the tests",
    constraints="batch divisible by frames",
    notes=(
        "As the official TAM: no residual of its own (TANet places it inside a residual bottleneck), so it "
        "does not start as the identity. The gate is the local importance map; the adaptive kernels are "
        "`kernel_gate`."
    ),
)
class TAM(nn.Module):
    """Temporal Adaptive Module: ``Y = G(x̂) ⊛ (L(x̂) ⊙ X)`` (paper Eq. 2-5).

    ``x̂`` is the spatially averaged clip ``(C, T)``. The local branch ``L`` (temporal conv to ``C/β``, BN,
    ReLU, 1x1 conv, sigmoid) gives a location-sensitive importance map that rescales each frame's channels;
    the global branch ``G`` (per channel, an MLP ``T -> αT -> K`` with BN and ReLU, softmax) gives a
    location-invariant ``K``-tap temporal kernel per clip and channel, applied as a depthwise temporal
    convolution (zero padding at the clip ends).

    Differences from the official code: none in the computation (its BN in the local branch is kept;
    mmaction2's copy drops it); the adaptive convolution is written as a sum of ``K`` shifted frames instead of
    a grouped ``conv2d`` over all clips, which exports to ONNX for any batch.

    Attention memory: ``B·C·(T + K)`` entries (tiny).

    Args:
        channels: input channels ``C``.
        frames: clip length ``T`` (required).
        alpha: global branch expansion ``αT`` (paper: 2).
        beta: local branch reduction ``C/β`` (paper: 4).
        kernel_size: size ``K`` of the adaptive kernel and of the local temporal conv (paper: 3).
        act_layer: activation in both branches (paper: ReLU).
        gate_layer: importance-map activation (paper: sigmoid).
    """

    def __init__(
        self,
        channels: int,
        *,
        frames: int | None = None,
        alpha: int = 2,
        beta: int = 4,
        kernel_size: int = 3,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        self.frames = check_frames(frames)
        check_positive_int("alpha", alpha)
        check_positive_int("beta", beta)
        check_odd_kernel("kernel_size", kernel_size)
        hidden = max(1, channels // beta)
        self.local = nn.Sequential(
            nn.Conv1d(channels, hidden, kernel_size, padding=kernel_size // 2, bias=False),
            SafeBatchNorm1d(hidden),  # a one-frame clip at batch 1 (frames=1 in a detector) still trains
            create_act(act_layer),
            nn.Conv1d(hidden, channels, 1, bias=False),
        )
        self.gate = Gate(gate_layer, kind="channel")
        self.kernel_mlp = nn.Sequential(
            nn.Linear(frames, frames * alpha, bias=False),
            SafeBatchNorm1d(frames * alpha),
            create_act(act_layer),
            nn.Linear(frames * alpha, kernel_size, bias=False),
        )
        self.kernel_gate = SoftmaxGate(kind="branch", layout="CK")
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B*T, C, H, W) -> (B*T, C, H, W): B clips of T = ``frames`` frames, frame t of clip b at row b*T + t."""
        clip = to_clips(x, self.frames)  # (B, C, T, H, W)
        b, c, t = clip.shape[:3]
        desc = clip.mean(dim=(3, 4))  # (B, C, T)
        importance = self.gate(self.local(desc))  # (B, C, T)
        kernel = self.kernel_gate(self.kernel_mlp(desc.reshape(b * c, t))).reshape(b, c, -1)  # (B, C, K)
        z = clip * importance[..., None, None]
        pad = self.kernel_size // 2
        z = F.pad(z, (0, 0, 0, 0, pad, pad))
        y = sum(kernel[:, :, i, None, None, None] * z[:, :, i : i + t] for i in range(self.kernel_size))
        return from_clips(y)


@register(
    "tmhsa",
    category="temporal",
    paper="Attention Is All You Need",
    year=2017,
    url="https://arxiv.org/abs/1706.03762",
    needs_frames=True,
    reference="torch.nn.MultiheadAttention with the same weights (tests)",
    constraints="channels divisible by heads; batch divisible by frames",
    notes=(
        "Multi-head self-attention across the T frames at every spatial position (tokens = C-dim features), "
        "pre-norm LayerNorm with a fixed sinusoidal frame encoding, output projection scaled by a learnable "
        "gamma that starts at 0 (the block starts as the identity)."
    ),
)
class TemporalMHSA(CapturesAttention, nn.Module):
    """Temporal multi-head self-attention: ``y_t = x_t + γ · MHSA(LN(x) + PE)_t`` across frames, per position.

    Each spatial position of a clip is a sequence of ``T`` tokens (its ``C`` features in each frame); the
    frames attend to each other with ``heads`` heads; a sinusoidal frame encoding tells the heads which frame
    is which. Spatial positions never mix.

    Differences from a Transformer layer: attention only (no MLP), and a residual scaled by ``γ`` (init 0)
    after a pre-norm ``LayerNorm``, so the block starts as the identity and the norm keeps the attention
    logits well scaled whatever the feature magnitudes.

    Attention memory: ``B·H·W·heads·T²`` entries (1x256x80x80 with T=8, 4 heads, fp32: 6.3 MiB per clip).

    Args:
        channels: input channels ``C`` (divisible by ``heads``).
        frames: clip length ``T`` (required).
        heads: attention heads (default 4).
        qkv_bias: bias in the query/key/value projection.
    """

    def __init__(self, channels: int, *, frames: int | None = None, heads: int = 4, qkv_bias: bool = True):
        super().__init__()
        check_positive_int("channels", channels)
        self.frames = check_frames(frames)
        check_positive_int("heads", heads)
        check_divisible("channels", channels, "heads", heads)
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.register_buffer("pos", sinusoidal_encoding(frames, channels), persistent=False)
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.gate = SoftmaxGate(kind="temporal")
        self.proj = nn.Linear(channels, channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B*T, C, H, W) -> (B*T, C, H, W): B clips of T = ``frames`` frames, frame t of clip b at row b*T + t."""
        clip = to_clips(x, self.frames)  # (B, C, T, H, W)
        b, c, t, h, w = clip.shape
        tokens = clip.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)  # one sequence per position
        y = multi_head_attention(
            self.norm(tokens) + self.pos.to(tokens.dtype), self.qkv, self.proj, self.gate, self.heads
        )
        y = tokens + self.gamma * y
        return from_clips(y.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2))


@register(
    "gltr",
    category="temporal",
    paper="Global-Local Temporal Representations For Video Person Re-Identification",
    year=2019,
    url="https://arxiv.org/abs/1908.10049",
    needs_frames=True,
    constraints="batch divisible by frames",
    notes=(
        "Adapted from a sequence-level descriptor to a per-frame, shape-preserving block: the dilated temporal "
        "pyramid (DTP) and temporal self-attention (TSA) run on every spatial position's T-frame sequence "
        "(temporal convs with 1x1 spatial kernels) instead of on pooled frame features, the final temporal "
        "average pooling is dropped (one output per frame), and a 1x1 conv + zero-init BN maps the N*width "
        "pyramid back to C as a residual (identity start)."
    ),
)
class GLTR(CapturesAttention, nn.Module):
    """GLTR-style block: dilated temporal pyramid + temporal self-attention per position, fused back to ``C``.

    ``F' = [conv_{r}(x) for r in dilations]`` (parallel temporal convs, kernel 3, dilation ``r``, zero
    padding, concatenated: short-term cues at several time scales, paper Eq. 2-3); ``F'' = F' + W(V · M)``
    with ``M = softmax`` over frames of ``BN-ReLU(B(F'))ᵀ · BN-ReLU(C(F'))`` (long-term relations, paper
    Eq. 4-6); ``y = x + BN(conv1x1(F''))``.

    Adaptation to a per-frame module (the paper pools each frame to a vector and outputs one vector per
    sequence): the pyramid and the attention run on the sequence of every spatial position; there is no
    temporal pooling; the fusion conv with a zero-init BatchNorm maps back to ``C`` and starts as the
    identity. The attention is normalised over the frames read from (the usual convention; the paper's
    ``softmax(BᵀC)`` leaves the axis implicit).

    Attention memory: ``B·H·W·T²`` entries (1x256x80x80 with T=8 fp32: 1.6 MiB per clip).

    Args:
        channels: input channels ``C``.
        frames: clip length ``T`` (required).
        dilations: temporal dilation rates of the pyramid (paper: 1, 2, 4).
        rd_ratio: width of each pyramid branch as a fraction of ``C`` (paper: 1, each branch keeps ``d``).
        rd_channels: explicit branch width; overrides ``rd_ratio``.
        rd_divisor: round the branch width to a multiple of this.
        attn_ratio: the attention's inner width is the pyramid width divided by this (paper: α = 2).
        act_layer: activation after the query/key BatchNorms (paper: ReLU).
    """

    def __init__(
        self,
        channels: int,
        *,
        frames: int | None = None,
        dilations: tuple[int, ...] = (1, 2, 4),
        rd_ratio: float = 1.0,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        attn_ratio: float = 2,
        act_layer: LayerType = "relu",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        self.frames = check_frames(frames)
        if not dilations:
            raise ValueError("dilations must name at least one dilation rate")
        for d in dilations:
            check_positive_int("dilations", d)
        check_positive("attn_ratio", attn_ratio)
        width = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor, round_limit=0.9)
        pyramid = width * len(dilations)
        inner = max(1, int(pyramid / attn_ratio))
        self.pyramid = nn.ModuleList(
            nn.Conv3d(channels, width, (3, 1, 1), padding=(d, 0, 0), dilation=(d, 1, 1)) for d in dilations
        )
        self.query = nn.Sequential(nn.Conv3d(pyramid, inner, 1), nn.BatchNorm3d(inner), create_act(act_layer))
        self.key = nn.Sequential(nn.Conv3d(pyramid, inner, 1), nn.BatchNorm3d(inner), create_act(act_layer))
        self.value = nn.Conv3d(pyramid, inner, 1)
        self.gate = SoftmaxGate(kind="temporal")
        self.out = nn.Conv3d(inner, pyramid, 1)
        self.fuse = nn.Conv3d(pyramid, channels, 1, bias=False)
        self.norm = nn.BatchNorm3d(channels)
        nn.init.zeros_(self.norm.weight)  # identity start: the block adds nothing until trained
        nn.init.zeros_(self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B*T, C, H, W) -> (B*T, C, H, W): B clips of T = ``frames`` frames, frame t of clip b at row b*T + t."""
        clip = to_clips(x, self.frames)  # (B, C, T, H, W)
        f = torch.cat([conv(clip) for conv in self.pyramid], dim=1)  # DTP: (B, N*width, T, H, W)
        q, k, v = (self._sequences(m(f)) for m in (self.query, self.key, self.value))  # (B*H*W, T, c)
        o = softmax_attention(q, k, v, self.gate, scale=1.0)  # (B*H*W, T, c): row = output frame
        f = f + self.out(self._unsequences(o, f.shape))  # TSA
        return x + from_clips(self.norm(self.fuse(f)))

    @staticmethod
    def _sequences(t: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = t.shape
        return t.permute(0, 3, 4, 2, 1).reshape(b * h * w, f, c)

    @staticmethod
    def _unsequences(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        b, _, f, h, w = shape
        return t.reshape(b, h, w, f, -1).permute(0, 4, 3, 1, 2)
