"""The one softmax-attention core every zoo module builds on: ``gate(scale · q kᵀ + bias) v``.

Global attention over ``N = H*W`` positions costs an ``N x N`` matrix per image and head: at 1x256x80x80 that
is 6400² fp32 = 156 MiB per head, and a forward+backward keeps several. Where the attention is plain
``softmax(q kᵀ) v``, :func:`softmax_attention` calls :func:`torch.nn.functional.scaled_dot_product_attention`,
whose fused kernels never store that matrix (memory ``O(N)``). The weights then never exist, so whenever
someone looks (a hook on the module's ``gate``, a global module hook, or ``capture_attention = True``) the
explicit ``softmax`` runs through ``gate`` instead, after checking the matrix against ``memory_limit_mb``.
Modules whose softmax is not of that form (a bias, a row/column mask) still apply it through a
:class:`SoftmaxGate`, so every module's attention weights leave through one kind of gate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _torch_module

from attnyolo.attention._base import check_attention_memory
from attnyolo.attention.gate_kinds import GateKind, GateModule

DEFAULT_MEMORY_LIMIT_MB = 2048


class SoftmaxGate(GateModule):
    """Softmax over dimension ``dim`` (default the last): the exit point of a module's attention weights.

    ``kind`` declares what the weights are (``"self_attention"``, ``"window"``, ``"temporal"``, ... see
    :mod:`attnyolo.attention.gate_kinds`).

    ``observed`` is true when something wants to see the weights (a hook on this module, a global module
    hook, or ``capture``); :func:`softmax_attention` then computes them explicitly instead of through a
    fused kernel.
    """

    def __init__(self, dim: int = -1, *, kind: GateKind, layout: str | None = None) -> None:
        super().__init__(kind=kind, layout=layout)
        self.dim = dim
        self.capture = False

    @property
    def observed(self) -> bool:
        return bool(
            self.capture
            or self._forward_hooks
            or self._forward_pre_hooks
            or getattr(_torch_module, "_global_forward_hooks", None)
            or getattr(_torch_module, "_global_forward_pre_hooks", None)
        )

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits of any shape -> weights of the same shape, summing to 1 along ``dim``."""
        return logits.softmax(dim=self.dim)

    def __setstate__(self, state: dict) -> None:
        # pickled before ``dim`` existed (always the last dimension then)
        super().__setstate__(state)
        self.__dict__.setdefault("dim", -1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class CapturesAttention:
    """Mixin: ``module.capture_attention = True`` makes the module compute its weights through ``gate``."""

    gate: SoftmaxGate

    @property
    def capture_attention(self) -> bool:
        return self.gate.capture

    @capture_attention.setter
    def capture_attention(self, value: bool) -> None:
        self.gate.capture = bool(value)


def _fused_attention(q, k, v, scale: float, key_mask=None, dropout: float = 0.0) -> torch.Tensor:
    """``softmax(scale q kᵀ) v`` by SDPA, also when v's width differs from q's.

    The fused kernels need one width for q, k and v, so the narrower side is zero-padded to the wider:
    zero features add exact zeros to ``q kᵀ`` (the scale is passed explicitly) and give zero output columns,
    which are cut off. (Cutting a wider v into slices of q's width instead repeats the softmax per slice and
    was 10-70% slower on CPU.) 4-D inputs ``(B, heads, N, d)`` go in as they are; other leading dimensions are
    flattened so the kernels see ``(batch, 1, N, width)``.
    """
    *lead, nq, d = q.shape
    nk, dv = k.shape[-2], v.shape[-1]
    width = max(d, dv)

    def fit(t: torch.Tensor, n: int, dt: int) -> torch.Tensor:
        if t.dim() != 4:
            t = t.reshape(-1, 1, n, dt)
        if dt < width:
            return F.pad(t, (0, width - dt))
        # The fused kernels fall back to the O(N²) maths path unless the feature dimension is contiguous.
        return t if t.stride(-1) == 1 else t.contiguous()

    q, k, v = fit(q, nq, d), fit(k, nk, d), fit(v, nk, dv)
    mask = None
    if key_mask is not None:
        mask = key_mask.expand(*lead, nk).reshape(q.shape[0], q.shape[1], 1, nk)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)
    out = out.reshape(*lead, nq, width)
    return out[..., :dv] if dv < width else out


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gate: SoftmaxGate,
    *,
    scale: float,
    bias: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
    dropout: float = 0.0,
    memory_limit_mb: float | None = None,
    owner: str = "attention",
) -> torch.Tensor:
    """``gate(scale · q kᵀ + bias) v`` for ``q: (..., Nq, d)``, ``k: (..., Nk, d)``, ``v: (..., Nk, dv)``.

    ``key_mask`` (``(..., Nk)``, True = real) drops padded keys. Without a ``bias`` and with nobody
    observing ``gate`` this runs the memory-efficient fused kernel; otherwise the ``(..., Nq, Nk)`` matrix is
    materialised, after checking it against ``memory_limit_mb``.
    """
    if bias is None and not gate.observed:
        return _fused_attention(q, k, v, scale, key_mask, dropout)
    check_attention_memory(owner, math.prod(q.shape[:-1]) * k.shape[-2], q.dtype, memory_limit_mb)
    # scale q (N x d) rather than the logits (N x N): one pass over the big matrix fewer
    logits = (q if scale == 1.0 else q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits + bias
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[..., None, :], float("-inf"))
    return F.dropout(gate(logits), dropout, training=dropout > 0) @ v


def multi_head_attention(
    tokens: torch.Tensor,
    qkv: nn.Linear,
    proj: nn.Linear,
    gate: SoftmaxGate,
    heads: int,
    *,
    memory_limit_mb: float | None = None,
    owner: str = "attention",
) -> torch.Tensor:
    """Multi-head self-attention of ``tokens`` ``(N, L, C)`` -> ``(N, L, C)`` (``nn.MultiheadAttention``'s maths)."""
    n, length, c = tokens.shape
    q, k, v = qkv(tokens).reshape(n, length, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    o = softmax_attention(
        q, k, v, gate, scale=(c // heads) ** -0.5, memory_limit_mb=memory_limit_mb, owner=owner
    )  # (N, heads, L, d)
    return proj(o.transpose(1, 2).reshape(n, length, c))


def to_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, heads*d, H, W)`` -> ``(B, heads, H*W, d)``."""
    b, c, h, w = t.shape
    return t.reshape(b, heads, c // heads, h * w).transpose(-1, -2)


def from_heads(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(B, heads, H*W, d)`` -> ``(B, heads*d, H, W)``."""
    return t.transpose(-1, -2).reshape(t.shape[0], -1, h, w)
