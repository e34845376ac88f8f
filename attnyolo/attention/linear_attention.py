"""Attention in linear time: every position attends to a small set of tokens instead of to every position.

- External attention: Guo, Liu, Mu & Hu, "Beyond Self-attention: External Attention using Two Linear Layers
  for Visual Tasks", TPAMI 2022, https://arxiv.org/abs/2105.02358 (official code:
  https://github.com/MenghaoGuo/EANet). The keys and values are two learned memories of S units.
- Separable self-attention: Mehta & Rastegari, "Separable Self-attention for Mobile Vision Transformers",
  TMLR 2023 (MobileViTv2), https://arxiv.org/abs/2206.02680 (official code: apple/ml-cvnets,
  ``LinearSelfAttention``). One latent token: a softmax over positions pools a context vector.
- Agent attention: Han, Ye, Han, Pan, Song, Wan & Huang, "Agent Attention: On the Integration of Softmax and
  Linear Attention", ECCV 2024, https://arxiv.org/abs/2312.08874 (official code:
  https://github.com/LeapLabTHU/Agent-Attention, ``agent_pvt.py``). n agent tokens pooled from the queries.

Public re-implementations to avoid: External-Attention-pytorch's ``ExternalAttention`` works on token
sequences without EANet's input/output convs, BatchNorm and residual.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention._base import SafeBatchNorm2d, check_divisible, check_positive_int
from attnyolo.attention._sliding import resize_mean
from attnyolo.attention.gate_kinds import GateModule
from attnyolo.attention.self_attention import SoftmaxGate, _pair, softmax_attention
from attnyolo.registry import register

# ---- external attention ------------------------------------------------------------------------------------


class _DoubleNormGate(GateModule):
    """EANet's double normalisation of ``(B, S, N)`` logits: softmax over positions, then l1 over the units."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, S, N) -> (B, S, N): softmax over N, then normalised over S."""
        attn = logits.softmax(dim=-1)
        return attn / (1e-9 + attn.sum(dim=1, keepdim=True))


@register(
    "external",
    category="self_attention",
    paper="Beyond Self-attention: External Attention using Two Linear Layers for Visual Tasks",
    year=2022,
    url="https://arxiv.org/abs/2105.02358",
    constraints="train mode needs B*H*W > 1 only where BatchNorm would see one value (handled: running stats)",
    reference="official code (EANet External_attention), restated in tests/attention/test_efficient_attention.py",
    notes="The official code makes M_v's weight a transposed view of M_k's (shared storage, so the two stay "
    "tied under in-place optimiser steps); here M_v starts as M_k's transpose and trains freely, as the "
    "paper's two independent linear layers. BatchNorm instead of SyncBatchNorm.",
)
class ExternalAttention(nn.Module):
    """EANet external attention: every position attends to S learned memory units.

    ``A = DoubleNorm(F M_kᵀ)``, ``F_out = A M_v``, as in the official segmentation head:
    ``y = ReLU(x + BN(Conv1x1(M_v(DoubleNorm(M_k(Conv1x1(x)))))))``.

    ``M_k``, ``M_v`` are memories of S units shared by all positions and images; the double normalisation
    is a softmax over the N positions followed by an l1 normalisation over the S units. Memory is linear
    in N: ``B · S · N`` weights (at 1x256x80x80 fp32, S = 64: 1.6 MiB).

    Args:
        channels: input channels C.
        memory_units: S, the number of memory units (paper: 64).

    Differs from the official code: see the spec's notes (untied initial copy of M_kᵀ, BatchNorm).
    """

    def __init__(self, channels: int, *, memory_units: int = 64):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("memory_units", memory_units)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.linear_0 = nn.Conv1d(channels, memory_units, 1, bias=False)  # M_k
        self.linear_1 = nn.Conv1d(memory_units, channels, 1, bias=False)  # M_v
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), SafeBatchNorm2d(channels))
        self.gate = _DoubleNormGate(kind="spatial")
        # The official initialisation: normal(0, sqrt(2 / fan_out)) for the convs, M_v = M_kᵀ.
        for conv in (self.conv1, self.linear_0, self.conv2[0]):
            fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
            nn.init.normal_(conv.weight, 0.0, (2.0 / fan_out) ** 0.5)
        nn.init.zeros_(self.conv1.bias)
        with torch.no_grad():
            self.linear_1.weight.copy_(self.linear_0.weight.transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        attn = self.gate(self.linear_0(self.conv1(x).reshape(b, c, h * w)))  # (B, S, N)
        out = self.conv2(self.linear_1(attn).reshape(b, c, h, w))
        return torch.relu(out + x)


# ---- MobileViTv2 separable self-attention ----------------------------------------------------------------


@register(
    "mvit2",
    category="self_attention",
    paper="Separable Self-attention for Mobile Vision Transformers",
    year=2022,
    url="https://arxiv.org/abs/2206.02680",
    reference="official code (ml-cvnets LinearSelfAttention on unfolded patches), restated in "
    "tests/attention/test_efficient_attention.py",
    notes="MobileViTv2 resizes a map whose sides are not multiples of the patch size (bilinear); here the map "
    "is zero-padded to whole patches and the padded positions are masked out of the context softmax, then "
    "cropped (identical when the sides are multiples). The layer only: the block's convs, norms and FFN "
    "are not part of the attention.",
)
class SeparableSelfAttention(nn.Module):
    """MobileViTv2 separable self-attention: one softmax-pooled context vector scales the values.

    ``c = Σ_n softmax_n(x W_I)_n (x W_K)_n``, ``y = (ReLU(x W_V) ⊙ c) W_O``, with one context vector per
    pixel-in-patch position.

    As in MobileViTv2, the map is unfolded into ``p x p`` patches: for each of the ``P = p²`` positions
    inside a patch, the softmax runs over the ``N = HW / P`` patches. Memory is linear in N (no N x N
    matrix): ``B · H · W`` context scores (at 1x256x80x80 fp32: 25 KiB).

    Args:
        channels: input channels C (the embedding width d).
        patch_size: patch side p (MobileViTv2: 2; an int or ``(p_h, p_w)``).

    Differs from the official code: any ``H, W`` through masked zero padding (see the spec's notes); the
    patch unfolding is a reshape of the projected map (the projections are 1x1, so this is the same as
    projecting unfolded patches).
    """

    def __init__(self, channels: int, *, patch_size: int | tuple[int, int] = 2):
        super().__init__()
        check_positive_int("channels", channels)
        self.patch_size = _pair("patch_size", patch_size)
        self.channels = channels
        self.qkv_proj = nn.Conv2d(channels, 1 + 2 * channels, 1)
        self.out_proj = nn.Conv2d(channels, channels, 1)
        self.gate = SoftmaxGate(kind="spatial")

    def _patches(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, D, H', W')`` with H', W' multiples of the patch -> ``(B, D, P, N)`` as ml-cvnets unfolds."""
        b, d, h, w = t.shape
        ph, pw = self.patch_size
        t = t.reshape(b, d, h // ph, ph, w // pw, pw).permute(0, 1, 3, 5, 2, 4)
        return t.reshape(b, d, ph * pw, (h // ph) * (w // pw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        ph, pw = self.patch_size
        pad_h, pad_w = -h % ph, -w % pw
        qkv = F.pad(self.qkv_proj(x), (0, pad_w, 0, pad_h))
        query, key, value = self._patches(qkv).split([1, c, c], dim=1)
        # Always masked (no Python branch on the size), so an ONNX export with dynamic H, W pads at any size.
        real = F.pad(torch.ones_like(x[:, :1], dtype=torch.bool), (0, pad_w, 0, pad_h))
        query = query.masked_fill(~self._patches(real), torch.finfo(query.dtype).min)
        scores = self.gate(query)  # (B, 1, P, N), softmax over the patches
        context = (key * scores).sum(dim=-1, keepdim=True)  # (B, C, P, 1)
        out = F.relu(value) * context  # (B, C, P, N)
        hp, wp = (h + pad_h) // ph, (w + pad_w) // pw
        out = out.reshape(b, c, ph, pw, hp, wp).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h + pad_h, w + pad_w)
        return self.out_proj(out[:, :, :h, :w])


# ---- agent attention -------------------------------------------------------------------------------------


def _resize_bias(bias: torch.Tensor, size: tuple[int, ...], mode: str) -> torch.Tensor:
    """Interpolate a learned position bias over its trailing spatial axes to ``size``.

    Also at the bias's own size (exact there: weights 1 and 0), so no branch freezes the size in an ONNX export.
    """
    lead = bias.shape[: -len(size)]
    flat = bias.reshape(1, -1, *bias.shape[-len(size) :])
    return F.interpolate(flat, size=size, mode=mode, align_corners=False).reshape(*lead, *size)


@register(
    "agent",
    category="self_attention",
    paper="Agent Attention: On the Integration of Softmax and Linear Attention",
    year=2024,
    url="https://arxiv.org/abs/2312.08874",
    constraints="channels divisible by num_heads; agent_num a perfect square",
    reference="official code (agent_pvt.py AgentAttention, sr_ratio=1), restated in "
    "tests/attention/test_efficient_attention.py",
    notes="The official PVT version learns its row/column biases at one input size (num_patches); here they "
    "are learned at feat_size and linearly interpolated to other sizes (the agent biases are bilinearly "
    "interpolated, as in the official code). No spatial reduction (sr_ratio=1, Agent-PVT's last stage). "
    "Agent tokens pooled by exact pooling matrices (ONNX-exportable, also when H or W < the agent grid).",
)
class AgentAttention(nn.Module):
    """Agent attention: ``O = σ(Q Aᵀ) σ(A Kᵀ) V + DWC(V)``, with agents ``A = pool(Q)``.

    n agent tokens (an ``√n x √n`` average pooling of the queries) first aggregate the values by softmax
    attention over all positions (agent aggregation), then broadcast them back to every query (agent
    broadcast). Both softmaxes carry the paper's agent position biases; a 3x3 depth-wise conv of V restores
    feature diversity. Memory is linear in N: ``2 · B · heads · n · N`` weights (at 1x256x80x80 fp32,
    8 heads, n = 49: 19 MiB).

    Args:
        channels: input channels C (divisible by ``num_heads``).
        num_heads: attention heads (Agent-PVT's last stage: 8).
        agent_num: number of agent tokens n, a perfect square (paper: 49).
        qkv_bias: bias in the q and kv projections.
        feat_size: ``(H, W)`` at which the row/column agent biases are learned (an int means square).

    Differs from the official code: see the spec's notes. ``gate`` sees the broadcast weights
    ``σ(Q Aᵀ + B_2)`` (``(B, heads, N, n)``), ``agent_gate`` the aggregation weights.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 8,
        agent_num: int = 49,
        qkv_bias: bool = False,
        feat_size: int | tuple[int, int] = 20,
    ):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("channels", channels, "num_heads", num_heads)
        check_positive_int("agent_num", agent_num)
        pool = round(agent_num**0.5)
        if pool * pool != agent_num:
            raise ValueError(f"agent_num must be a perfect square (agents form a grid), got {agent_num}")
        fh, fw = _pair("feat_size", feat_size)
        self.num_heads, self.agent_num, self.pool_size = num_heads, agent_num, pool
        self.scale = (channels // num_heads) ** -0.5
        self.q = nn.Conv2d(channels, channels, 1, bias=qkv_bias)
        self.kv = nn.Conv2d(channels, 2 * channels, 1, bias=qkv_bias)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.dwc = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.an_bias = nn.Parameter(torch.zeros(num_heads, agent_num, 7, 7))
        self.na_bias = nn.Parameter(torch.zeros(num_heads, agent_num, 7, 7))
        self.ah_bias = nn.Parameter(torch.zeros(1, num_heads, agent_num, fh, 1))
        self.aw_bias = nn.Parameter(torch.zeros(1, num_heads, agent_num, 1, fw))
        self.ha_bias = nn.Parameter(torch.zeros(1, num_heads, fh, 1, agent_num))
        self.wa_bias = nn.Parameter(torch.zeros(1, num_heads, 1, fw, agent_num))
        for p in (self.an_bias, self.na_bias, self.ah_bias, self.aw_bias, self.ha_bias, self.wa_bias):
            nn.init.trunc_normal_(p, std=0.02)
        self.agent_gate = SoftmaxGate(kind="spatial")
        self.gate = SoftmaxGate(kind="self_attention")

    def _biases(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Agent -> position ``(1, heads, n, N)`` and position -> agent ``(1, heads, N, n)`` biases at ``h x w``."""
        nh, n = self.num_heads, self.agent_num
        ah = _resize_bias(self.ah_bias.squeeze(-1), (h,), "linear").unsqueeze(-1)
        aw = _resize_bias(self.aw_bias.squeeze(-2), (w,), "linear").unsqueeze(-2)
        ha = _resize_bias(self.ha_bias.squeeze(-2).transpose(-1, -2), (h,), "linear").transpose(-1, -2)
        wa = _resize_bias(self.wa_bias.squeeze(-3).transpose(-1, -2), (w,), "linear").transpose(-1, -2)
        agent_to_pos = _resize_bias(self.an_bias, (h, w), "bilinear").reshape(1, nh, n, h * w)
        agent_to_pos = agent_to_pos + (ah + aw).reshape(1, nh, n, h * w)
        pos_to_agent = _resize_bias(self.na_bias, (h, w), "bilinear").reshape(1, nh, n, h * w).transpose(-1, -2)
        pos_to_agent = pos_to_agent + (ha.unsqueeze(-2) + wa.unsqueeze(-3)).reshape(1, nh, h * w, n)
        return agent_to_pos, pos_to_agent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        nh, d = self.num_heads, c // self.num_heads
        q = self.q(x)
        k, v = self.kv(x).chunk(2, dim=1)
        agents = resize_mean(q, self.pool_size, self.pool_size).reshape(b, nh, d, -1).transpose(-1, -2)
        q, k, v_heads = (t.reshape(b, nh, d, h * w).transpose(-1, -2) for t in (q, k, v))
        agent_to_pos, pos_to_agent = self._biases(h, w)
        agent_v = softmax_attention(agents, k, v_heads, self.agent_gate, scale=self.scale, bias=agent_to_pos.to(q))
        out = softmax_attention(q, agents, agent_v, self.gate, scale=self.scale, bias=pos_to_agent.to(q))
        out = out.transpose(-1, -2).reshape(b, c, h, w) + self.dwc(v)
        return self.proj(out)
