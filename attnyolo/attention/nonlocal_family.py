"""Non-local style self-attention: each position reads from distant positions of the same feature map.

- Non-local block (embedded Gaussian): Wang, Girshick, Gupta & He, "Non-local Neural Networks", CVPR 2018,
  https://arxiv.org/abs/1711.07971 (official code: https://github.com/facebookresearch/video-nonlocal-net).
- BAT: Chi, Yuan, Yu & Zhang, "Non-Local Neural Networks With Grouped Bilinear Attentional Transforms",
  CVPR 2020, https://openaccess.thecvf.com/content_CVPR_2020/html/Chi_Non-Local_Neural_Networks_With_Grouped_Bilinear_Attentional_Transforms_CVPR_2020_paper.html
  (official code: https://github.com/BA-Transform/BAT-Image-Classification).
- Criss-Cross attention: Huang, Wang, Huang, Huang, Wei & Liu, "CCNet: Criss-Cross Attention for Semantic
  Segmentation", ICCV 2019, https://arxiv.org/abs/1811.11721 (official code: https://github.com/speedinghzl/CCNet).
- DANet: Fu, Liu, Tian, Li, Bao, Fang & Lu, "Dual Attention Network for Scene Segmentation", CVPR 2019,
  https://arxiv.org/abs/1809.02983 (official code: https://github.com/junfu1115/DANet).
- A²-Net: Chen, Kalantidis, Li, Yan & Feng, "A²-Nets: Double Attention Networks", NeurIPS 2018,
  https://arxiv.org/abs/1810.11579.

Full attention over the ``N = H*W`` positions of a map is an ``N x N`` matrix per image: at 1x256x80x80,
6400^2 fp32 = 156 MiB. The non-local block and DANet's position attention are plain ``softmax(q kᵀ) v`` and run
on the fused kernel of :mod:`attnyolo.attention._attention` (memory ``O(N)``); the matrix is built, after a
``memory_limit_mb`` check, only when its weights are observed (a hook on ``gate``, ``capture_attention``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention._attention import DEFAULT_MEMORY_LIMIT_MB, CapturesAttention, SoftmaxGate, softmax_attention
from attnyolo.attention._base import (
    LayerType,
    check_divisible,
    check_memory_limit,
    check_positive_int,
    check_unit_interval,
    create_act,
    reduced_channels,
)
from attnyolo.attention.gate_kinds import GateModule
from attnyolo.registry import register

_NL_PAPER = "Non-local Neural Networks"
_NL_URL = "https://arxiv.org/abs/1711.07971"


def clip_tokens(t: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B*T, c, h, w)`` -> ``(B, T*h*w, c)``: one token per position of a clip (``frames=1``: of an image)."""
    bt, c, h, w = t.shape
    return t.reshape(bt // frames, frames, c, h * w).transpose(2, 3).reshape(bt // frames, frames * h * w, c)


def clip_untokens(t: torch.Tensor, frames: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`clip_tokens`: ``(B, T*h*w, c)`` -> ``(B*T, c, h, w)``."""
    b, _, c = t.shape
    return t.reshape(b, frames, h * w, c).transpose(2, 3).reshape(b * frames, c, h, w)


@register(
    "nonlocal",
    category="self_attention",
    paper=_NL_PAPER,
    year=2018,
    url=_NL_URL,
    reference="timm:NonLocalAttn (timm.layers.non_local_attn) with rd_ratio=1/2, use_scale=False",
    constraints="memory: O(H*W) through the fused attention kernel; only when the weights are observed (hook on "
    "gate / capture_attention), B*(H*W)*(H*W/4 if sub_sample else H*W) entries must fit memory_limit_mb",
    notes=(
        "The paper's embedded Gaussian block: theta/phi/g 1x1 convs to C/2, softmax over all positions, W 1x1 "
        "conv + BatchNorm with zero-init gamma (identity start). sub_sample=True adds the paper's 2x2 max-pool "
        "on phi and g (ceil mode, so odd sizes and 1-pixel maps work)."
    ),
)
@register(
    "nl",
    category="self_attention",
    paper=_NL_PAPER,
    year=2018,
    url=_NL_URL,
    preset={"rd_ratio": 1 / 8, "rd_divisor": 8, "use_scale": True},
    reference="timm:NonLocalAttn (timm.layers.non_local_attn)",
    constraints="memory: O(H*W) through the fused attention kernel; only when the weights are observed (hook on "
    "gate / capture_attention), B*(H*W)^2 entries must fit memory_limit_mb",
    notes=(
        "timm's NonLocalAttn under its timm name: the same block as `nonlocal` with timm's defaults (inner "
        "width make_divisible(C/8, 8), logits scaled by C^-0.5). Outputs equal timm's with the same weights."
    ),
)
class NonLocal(CapturesAttention, nn.Module):
    """Embedded Gaussian non-local block: ``z = x + BN(W · softmax(θ(x)ᵀ φ(x)) g(x))`` (paper Eq. 1-3, 6).

    Every output position is a softmax-weighted sum over all positions of ``g(x)``, projected back to ``C`` by
    ``W`` and a BatchNorm whose scale and shift start at zero, so the block starts as the identity.

    timm's ``NonLocalAttn`` is this block with other defaults (inner width ``C/8``, logits scaled), so ``nl``
    and ``nonlocal`` are two presets of this one class: ``nonlocal`` has the paper's defaults, ``nl`` timm's.

    Differences from the paper: ``use_scale`` optionally multiplies the logits by ``C^-0.5`` (timm; the official
    video code scales by the inner width instead); sub-sampling max-pools ``φ(x)`` and ``g(x)`` as the paper
    describes (the official code pools the input before the ``φ``/``g`` convs), with ``ceil_mode`` so any
    ``H, W`` works; convs use timm's Kaiming init (official code: Gaussian, std 0.01). From timm's
    ``NonLocalAttn``: none when built as ``nl``; parameter names differ (``theta, phi, g, w, norm`` for timm's
    ``t, p, g, z, norm``).

    Attention memory: ``O(N)`` through the fused kernel; when the weights are observed (a hook on ``gate``,
    ``capture_attention``) ``B · N · M`` entries, ``N = H·W``, ``M = N`` (``N/4`` with ``sub_sample``); at
    1x256x80x80 fp32: 156 MiB (39 MiB sub-sampled), independent of ``C``.

    Args:
        channels: input channels ``C``.
        rd_ratio: inner width as a fraction of ``C`` (paper: 1/2).
        rd_channels: explicit inner width; overrides ``rd_ratio``.
        rd_divisor: round the inner width to a multiple of this (1 = the paper's plain ``C/2``).
        use_scale: scale the logits by ``C^-0.5`` (paper: no; timm: yes).
        sub_sample: 2x2 max-pool after ``φ`` and ``g`` (the paper's sub-sampling trick, 4x fewer keys).
        memory_limit_mb: refuse an explicit attention matrix above this many MiB (``None``: no limit).
    """

    frames = 1  # positions attended jointly belong to one image; SpaceTimeNonLocal groups T frames

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 2,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        use_scale: bool = False,
        sub_sample: bool = False,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        inner = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor, round_limit=0.9)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True) if sub_sample else nn.Identity()
        self.gate = SoftmaxGate(kind="self_attention")
        self.w = nn.Conv2d(inner, channels, 1)
        self.norm = nn.BatchNorm2d(channels)
        self.scale = channels**-0.5 if use_scale else 1.0
        self.memory_limit_mb = memory_limit_mb
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # zero-init BN: the block adds nothing until trained (paper Sec. 3.3)
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        _, _, h, w = x.shape
        t = self.frames
        q = clip_tokens(self.theta(x), t)  # (B, N, c)
        k = clip_tokens(self.pool(self.phi(x)), t)  # (B, M, c)
        v = clip_tokens(self.pool(self.g(x)), t)  # (B, M, c)
        o = softmax_attention(
            q, k, v, self.gate, scale=self.scale, memory_limit_mb=self.memory_limit_mb, owner=type(self).__name__
        )  # (B, N, c)
        y = clip_untokens(o, t, h, w)
        return x + self.norm(self.w(y))


class _NormalisedSigmoid(GateModule):
    """BAT's attention weights: ``sigmoid`` normalised to sum to 1 over the last axis."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """(..., N) -> (..., N): sigmoids that sum to 1 along N."""
        w = w.sigmoid()
        return w / w.sum(dim=-1, keepdim=True)


def _conv_bn_act(cin: int, cout: int, act_layer: LayerType) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), create_act(act_layer))


def _adaptive_max_bins(x: torch.Tensor, bins: int, dim: int) -> torch.Tensor:
    """``adaptive_max_pool`` along one axis with PyTorch's bin edges, written with slices so it exports to ONNX
    for any size (the ONNX exporter only handles adaptive pooling when ``bins`` divides the size)."""
    size = x.shape[dim]
    edges = [((i * size) // bins, ((i + 1) * size + bins - 1) // bins) for i in range(bins)]
    return torch.cat([x.narrow(dim, s, e - s).amax(dim=dim, keepdim=True) for s, e in edges], dim=dim)


@register(
    "bat",
    category="self_attention",
    paper="Non-Local Neural Networks With Grouped Bilinear Attentional Transforms",
    year=2020,
    url="https://openaccess.thecvf.com/content_CVPR_2020/html/Chi_Non-Local_Neural_Networks_With_Grouped_Bilinear_Attentional_Transforms_CVPR_2020_paper.html",
    reference="timm:BatNonLocalAttn (timm.layers.non_local_attn)",
    constraints="the reduced width (rd_channels) must be divisible by groups",
    notes=(
        "timm's BatNonLocalAttn (from the official BAT code), extended to any H, W: timm requires H and W "
        "divisible by block_size; here the map is zero-padded up to a multiple of block_size for the block "
        "mixing and cropped back (pooling sees the unpadded map), which is exactly timm when they divide. The "
        "block mixing is a batched matmul on a (block, offset) view instead of timm's expanded "
        "Kronecker matrix: same result, no (H x H) matrix."
    ),
)
class BAT(nn.Module):
    """BAT block: ``y = x + Drop(conv(BAT(conv(x))))`` with ``BAT(z) = P · z · Q`` on a grid of blocks.

    ``x`` is reduced to ``rd`` channels; the row and column max-pooled profiles of a ``groups``-channel
    embedding predict, per group, a ``block_size x block_size`` row-mixing matrix ``P`` (rows sum to 1) and a
    column-mixing matrix ``Q`` (columns sum to 1). Splitting ``H`` into ``block_size`` bands, output band ``a``
    is ``Σ_b P[a, b] ·`` band ``b`` (same offset inside the band); columns likewise with ``Q``. So every
    position mixes with ``block_size²`` positions spread over the whole map, at the cost of two tiny matrices.

    Differences from timm (and the official code): works for any ``H, W`` (zero padding to a multiple of
    ``block_size``, crop after; identical to timm when ``block_size`` divides ``H`` and ``W``). The weights
    ``P`` and ``Qᵀ`` leave one ``gate`` stacked as ``(B, 2, groups, block_size, block_size)``.

    Attention memory: ``2 · B · groups · block_size²`` entries, whatever ``H, W`` (1x256x80x80 fp32: 784 bytes).

    Args:
        channels: input channels ``C``.
        block_size: number of bands per axis (paper/timm: 7).
        groups: groups with their own ``P, Q`` (timm: 2).
        rd_ratio: reduced width as a fraction of ``C`` (timm: 1/4).
        rd_channels: explicit reduced width; overrides ``rd_ratio``.
        rd_divisor: round the reduced width to a multiple of this (timm: 8).
        drop_rate: channel dropout (``Dropout2d``) on the branch before the residual add (timm: 0.2).
        act_layer: activation of every conv-BN-act (timm: ReLU).
    """

    def __init__(
        self,
        channels: int,
        *,
        block_size: int = 7,
        groups: int = 2,
        rd_ratio: float = 1 / 4,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        drop_rate: float = 0.2,
        act_layer: LayerType = "relu",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("block_size", block_size)
        check_positive_int("groups", groups)
        check_unit_interval("drop_rate", drop_rate)
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor, round_limit=0.9)
        check_divisible("rd_channels", rd, "groups", groups)
        self.block_size, self.groups = block_size, groups
        self.reduce = _conv_bn_act(channels, rd, act_layer)
        self.embed = _conv_bn_act(rd, groups, act_layer)
        self.conv_p = nn.Conv2d(groups, block_size * block_size * groups, (block_size, 1))
        self.conv_q = nn.Conv2d(groups, block_size * block_size * groups, (1, block_size))
        self.gate = _NormalisedSigmoid(kind="window")
        self.mix = _conv_bn_act(rd, rd, act_layer)
        self.expand = _conv_bn_act(rd, channels, act_layer)
        self.drop = nn.Dropout2d(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        z = self.reduce(x)
        e = self.embed(z)
        b, s, g = z.shape[0], self.block_size, self.groups
        rows = _adaptive_max_bins(e.amax(dim=3, keepdim=True), s, dim=2)  # (B, groups, s, 1)
        cols = _adaptive_max_bins(e.amax(dim=2, keepdim=True), s, dim=3)  # (B, groups, 1, s)
        p = self.conv_p(rows).reshape(b, g, s, s)
        q = self.conv_q(cols).reshape(b, g, s, s)
        p, qt = self.gate(torch.stack([p, q.transpose(-1, -2)], dim=1)).unbind(1)
        y = self._bilinear(z, p, qt.transpose(-1, -2))
        return x + self.drop(self.expand(self.mix(y)))

    def _bilinear(self, z: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``P · z · Q`` on ``block_size`` bands per axis; ``p``, ``q``: ``(B, groups, s, s)``."""
        b, c, h, w = z.shape
        s, g = self.block_size, self.groups
        # band heights and widths after padding (ceil division without negatives: ONNX Div truncates)
        th, tw = (h + s - 1) // s, (w + s - 1) // s
        z = F.pad(z, (0, tw * s - w, 0, th * s - h))
        # rows: view H as (band, offset) and mix bands with P
        y = p.unsqueeze(2) @ z.reshape(b, g, c // g, s, th * tw * s)
        # columns: view W as (band, offset), put the band last and mix with Q
        y = y.reshape(b, g, c // g, th * s, s, tw).transpose(-1, -2) @ q[:, :, None, None]
        y = y.transpose(-1, -2).reshape(b, c, th * s, tw * s)
        return y[:, :, :h, :w]


@register(
    "cc",
    category="self_attention",
    paper="CCNet: Criss-Cross Attention for Semantic Segmentation",
    year=2019,
    url="https://arxiv.org/abs/1811.11721",
    reference="official speedinghzl/CCNet CrissCrossAttention (pure-PyTorch version), re-derived in the tests",
    notes=(
        "The CrissCrossAttention module applied `recurrence` times with shared weights (the RCCA loop), without "
        "the segmentation head's 3x3 conv-BN-ReLU before/after the loop and its concat + bottleneck. The gate "
        "hook fires once per recurrence."
    ),
)
class CrissCrossAttention(nn.Module):
    """Criss-cross attention: every position attends to its row and its column, ``R`` times (paper Eq. 1-2).

    For position ``u``, ``A_u = softmax`` over the ``H + W - 1`` positions of its row and column of
    ``Q_u · K_i``; the output is ``γ Σ_i A_{u,i} V_i + x_u`` with ``γ`` starting at 0. After two recurrences
    (shared weights) every position has reached every other.

    Differences from the official code: none in the attention (``C/8`` query/key width with bias, the
    position itself counted once by masking its duplicate in the column with ``-inf``, ``γ = 0``); the
    recurrence loop of ``RCCAModule`` is inside the module (without the head's convs).

    Attention memory: ``B · H · W · (H + W)`` entries per recurrence (1x256x80x80 fp32: 3.9 MiB).

    Args:
        channels: input channels ``C``.
        rd_ratio: query/key width as a fraction of ``C`` (paper: 1/8).
        rd_channels: explicit query/key width; overrides ``rd_ratio``.
        rd_divisor: round the query/key width to a multiple of this (1 = the paper's ``C/8``).
        recurrence: how many times the (shared) criss-cross attention is applied (paper: R = 2).
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 8,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        recurrence: int = 2,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("recurrence", recurrence)
        inner = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor, round_limit=0.9)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gate = SoftmaxGate(kind="window")
        self.gamma = nn.Parameter(torch.zeros(1))
        self.recurrence = recurrence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        for _ in range(self.recurrence):
            x = self._criss_cross(x)
        return x

    def _criss_cross(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = self.query(x), self.key(x), self.value(x)
        e_col = torch.einsum("bcij,bckj->bijk", q, k)  # (B, H, W, H): position (i, j) vs (k, j)
        e_row = torch.einsum("bcij,bcik->bijk", q, k)  # (B, H, W, W): position (i, j) vs (i, k)
        # (i, j) lies on both its row and its column: keep it once, in the row
        rows = torch.arange(h, device=x.device)
        self_in_col = (rows[:, None] == rows).unsqueeze(1)  # (H, 1, H) diagonal (EyeLike has no bool kernel in ORT)
        e_col = e_col.masked_fill(self_in_col, float("-inf"))
        a_col, a_row = self.gate(torch.cat([e_col, e_row], dim=-1)).split([h, w], dim=-1)
        out = torch.einsum("bijk,bckj->bcij", a_col, v) + torch.einsum("bijk,bcik->bcij", a_row, v)
        return x + self.gamma * out


@register(
    "danet",
    category="self_attention",
    paper="Dual Attention Network for Scene Segmentation",
    year=2019,
    url="https://arxiv.org/abs/1809.02983",
    reference="official junfu1115/DANet PAM_Module + CAM_Module, re-derived in the tests",
    constraints="memory: position attention O(H*W) through the fused kernel; only when its weights are observed "
    "(hook on gate / capture_attention), B*(H*W)^2 entries must fit memory_limit_mb",
    notes=(
        "Position (PAM) and channel (CAM) attention modules of the paper, applied in parallel to x and summed "
        "as x + γ_p·PAM + γ_c·CAM (both γ start at 0, so the block starts as the identity). The segmentation "
        "head around them (3x3 conv-BN-ReLU to C/4 before and after each module, dropout, classifier) is left "
        "out to keep the shape. The gate is the position attention; the channel attention is `channel_gate`."
    ),
)
class DualAttention(CapturesAttention, nn.Module):
    """DANet's position + channel attention: ``y = x + γ_p · PAM(x) + γ_c · CAM(x)`` (paper Eq. 2, 4).

    ``PAM``: ``S = softmax(Bᵀ C)`` over all ``N`` positions with ``B, C`` 1x1 convs to ``C/8``, output
    ``D · Sᵀ`` with ``D`` a 1x1 conv. ``CAM``: ``X = softmax(max(A Aᵀ) - A Aᵀ)`` over channels (the official
    code's form of Eq. 3), output ``X · A``.

    Differences from the paper: the head's 3x3 conv-BN-ReLU layers (to ``C/4`` and back) around each module
    are dropped, and the two residual outputs ``x + γ_p PAM``, ``x + γ_c CAM`` are summed with one ``x``
    removed, so the block starts as the identity and keeps ``C`` channels. Like the official code, ``CAM``
    uses ``rowmax(E) - E`` for the logits, which after the softmax's shift invariance is ``softmax(-E)``
    (Eq. 3 in the paper writes ``softmax(E)``).

    Attention memory: position ``O(N)`` through the fused kernel, ``B · N²`` entries when its weights are observed
    (156 MiB at 1x256x80x80 fp32); channel ``B · C²`` entries (0.25 MiB).

    Args:
        channels: input channels ``C``.
        rd_ratio: query/key width of the position attention as a fraction of ``C`` (paper: 1/8).
        rd_channels: explicit query/key width; overrides ``rd_ratio``.
        rd_divisor: round the query/key width to a multiple of this (1 = the paper's ``C/8``).
        memory_limit_mb: refuse an explicit position attention matrix above this many MiB (``None``: no limit).
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
        inner = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor, round_limit=0.9)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gate = SoftmaxGate(kind="self_attention")
        self.channel_gate = SoftmaxGate(kind="channel_affinity")
        self.gamma_pos = nn.Parameter(torch.zeros(1))
        self.gamma_ch = nn.Parameter(torch.zeros(1))
        self.memory_limit_mb = memory_limit_mb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x + self.gamma_pos * self.position(x) + self.gamma_ch * self.channel(x)

    def position(self, x: torch.Tensor) -> torch.Tensor:
        """PAM without its residual: ``D · softmax(Bᵀ C)ᵀ``."""
        b, c, h, w = x.shape
        q, k, v = (conv(x).flatten(2).transpose(1, 2) for conv in (self.query, self.key, self.value))  # (B, N, ·)
        o = softmax_attention(
            q, k, v, self.gate, scale=1.0, memory_limit_mb=self.memory_limit_mb, owner=type(self).__name__
        )  # (B, N, C): row = output position
        return o.transpose(1, 2).reshape(b, c, h, w)

    def channel(self, x: torch.Tensor) -> torch.Tensor:
        """CAM without its residual: ``softmax(rowmax(A Aᵀ) - A Aᵀ) · A``."""
        a = x.flatten(2)  # (B, C, N)
        energy = a @ a.transpose(1, 2)  # (B, C, C)
        attn = self.channel_gate(energy.amax(dim=-1, keepdim=True) - energy)
        return (attn @ a).reshape(x.shape)


@register(
    "a2",
    category="self_attention",
    paper="A²-Nets: Double Attention Networks",
    year=2018,
    url="https://arxiv.org/abs/1810.11579",
    reference="paper Eq. 2-6, re-derived in the tests (no official code was released)",
    notes=(
        "Gather: n attention maps softmax-normalised over positions pool n global descriptors (bilinear "
        "pooling of the m-channel features); distribute: each position takes a softmax-over-descriptors "
        "mixture; a 1x1 conv restores C and the block is residual. Many copies online softmax the "
        "distribution over positions instead of descriptors; this follows the paper. The gate is the gathering "
        "maps; the distribution weights are `distribute_gate`."
    ),
)
class DoubleAttention(nn.Module):
    """Double attention: ``Z = x + conv(G_gather · softmax_n(V))``, ``G_gather = A · softmax_N(B)ᵀ`` (Eq. 2-6).

    ``A`` (``m`` channels), ``B`` and ``V`` (``n`` channels each) are 1x1 convs of ``x``. Each of the ``n``
    maps of ``B``, softmax-normalised over the positions, pools one ``m``-dim global descriptor; each position
    then takes a convex combination of the ``n`` descriptors with weights ``softmax`` over the ``n`` channels
    of ``V`` at that position.

    Differences from the paper: none in the block; the paper leaves ``m``, ``n`` to the architecture, here
    both default to ``C/4``; initialisation is PyTorch's default (the paper states none), so the block does not
    start as the identity.

    Attention memory: ``2 · B · n · N`` entries (two maps of ``n x N``), linear in ``N``; the descriptors are
    ``m x n``. At 1x256x80x80 fp32 with ``n = 64``: 3.1 MiB.

    Args:
        channels: input channels ``C``.
        rd_ratio: feature width ``m`` (and, unless ``descriptors`` is given, ``n``) as a fraction of ``C``.
        rd_channels: explicit ``m``; overrides ``rd_ratio``.
        rd_divisor: round ``m`` to a multiple of this (1 = plain ``C/4``).
        descriptors: number of global descriptors ``n`` (default: ``m``).
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 4,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        descriptors: int | None = None,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        m = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor, round_limit=0.9)
        n = m if descriptors is None else descriptors
        check_positive_int("descriptors", n)
        self.conv_a = nn.Conv2d(channels, m, 1)
        self.conv_b = nn.Conv2d(channels, n, 1)
        self.conv_v = nn.Conv2d(channels, n, 1)
        self.gate = SoftmaxGate(kind="spatial")  # gathering: over positions
        self.distribute_gate = SoftmaxGate(dim=1, kind="spatial")  # distribution: over descriptors
        self.proj = nn.Conv2d(m, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, _, h, w = x.shape
        feats = self.conv_a(x).flatten(2)  # (B, m, N)
        maps = self.gate(self.conv_b(x).flatten(2))  # (B, n, N)
        descriptors = feats @ maps.transpose(1, 2)  # (B, m, n): gather
        weights = self.distribute_gate(self.conv_v(x).flatten(2))  # (B, n, N)
        z = descriptors @ weights  # (B, m, N): distribute
        return x + self.proj(z.reshape(b, -1, h, w))
