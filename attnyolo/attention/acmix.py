"""ACmix: one set of 1x1 projections shared by local self-attention and a shift-based convolution, mixed.

- Pan, Ge, Lu, Song, Chen, Huang & Huang, "On the Integration of Self-Attention and Convolution", CVPR 2022,
  https://arxiv.org/abs/2111.14556 (official code: https://github.com/LeapLabTHU/ACmix, ``ACmix`` in
  ``ResNet/test_bottleneck.py``).

The attention is local: each position attends to its ``kernel_att x kernel_att`` window, ``B*head*k²*H*W``
weights (at 1x256x80x80 with the defaults: 4 x 49 x 6400 fp32 = 4.8 MiB). Windows are built by slicing a
padded map, one slice per offset, instead of ``nn.Unfold``, which copies every key and value ``k²`` times.
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import (
    check_attention_memory,
    check_divisible,
    check_memory_limit,
    check_odd_kernel,
    check_positive_int,
)
from attnyolo.attention.gate_kinds import GateModule
from attnyolo.attention.self_attention import DEFAULT_MEMORY_LIMIT_MB
from attnyolo.registry import register


def reflect_index(n: int | torch.Tensor, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of each position of a size-``n`` axis reflect-padded by ``pad`` on both sides.

    Equal to ``nn.ReflectionPad2d`` for ``pad < n``; beyond it the reflection repeats (numpy's ``reflect``)
    and a size-1 axis repeats its value, where ``ReflectionPad2d`` raises. Built from tensor operations on
    ``n``, so an ONNX export keeps it symbolic in the input size.
    """
    idx = torch.arange(n + 2 * pad, device=device) - pad
    period = torch.clamp(torch.as_tensor(2 * n - 2, device=device), min=1)
    r = torch.remainder(idx, period)
    return torch.where(r >= n, period - r, r)


def _linspace_pm1(n: int | torch.Tensor, device: torch.device) -> torch.Tensor:
    """``torch.linspace(-1, 1, n)`` (``[-1]`` for n = 1) from tensor operations on ``n`` (exportable, dynamic)."""
    step = 2.0 / torch.clamp(torch.as_tensor(n - 1, device=device, dtype=torch.float32), min=1.0)
    return torch.arange(n, device=device, dtype=torch.float32) * step - 1.0


def position_grid(h: int | torch.Tensor, w: int | torch.Tensor, device: torch.device) -> torch.Tensor:
    """ACmix's positions: ``(1, 2, H, W)``, channel 0 the x coordinate in ``[-1, 1]``, channel 1 the y coordinate."""
    loc_w = _linspace_pm1(w, device)[None, :].expand(h, w)
    loc_h = _linspace_pm1(h, device)[:, None].expand(h, w)
    return torch.stack([loc_w, loc_h])[None]


class _WindowSoftmax(GateModule):
    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """(B*heads, k², H, W) -> (B*heads, k², H, W): softmax over the k² window offsets."""
        return logits.softmax(dim=1)  # over the k² window offsets


@register(
    "acmix",
    category="self_attention",
    paper="On the Integration of Self-Attention and Convolution",
    year=2022,
    url="https://arxiv.org/abs/2111.14556",
    constraints="channels divisible by head (default 4); memory: B*head*kernel_att²*H*W attention weights must fit "
    "memory_limit_mb",
    reference="official LeapLabTHU/ACmix (ResNet/test_bottleneck.py), restated loop by loop in tests",
    notes="As the official ResNet ACmix at stride 1 with in = out channels (kernel_att 7, head 4, kernel_conv 3, "
    "rates 0.5/0.5, shift-initialised depthwise conv, which has no bias: the official reset_parameters sets it "
    "to None). Reflection padding is extended to maps not larger than the padding (the official "
    "ReflectionPad2d raises for H or W <= 3).",
)
class ACmix(nn.Module):
    """ACmix: ``y = rate1 * local_attention(q, k, v) + rate2 * shift_conv(fc([q, k, v]))`` (Sec. 4, Fig. 3).

    Stage I: three 1x1 convs give ``q, k, v`` (``head`` heads of ``C/head`` channels). Stage II, attention
    path: each position attends to its ``kernel_att²`` window with logits ``q · (k_j + pe_i - pe_j) /
    sqrt(d)``, the positional term ``pe`` a 1x1 conv of the ``[-1, 1]`` coordinates (reflection-padded like
    k and v); convolution path: a 1x1 conv maps the ``3*head`` features to ``kernel_conv²`` shifted inputs
    and a grouped conv initialised as the shift operator sums them. Two learnable scalars (0.5 each) mix the
    paths.

    Attention memory at 1x256x80x80 fp32 with the defaults: 4 heads x 49 x 6400 weights = 4.8 MiB (plus the
    same for the logits).

    Args:
        channels: input channels C (divisible by ``head``).
        kernel_att: attention window size (paper: 7).
        head: attention heads (paper: 4).
        kernel_conv: convolution path kernel size (paper: 3).
        memory_limit_mb: refuse attention weights above this many MiB (``None``: no limit).
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_att: int = 7,
        head: int = 4,
        kernel_conv: int = 3,
        memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("head", head)
        check_divisible("channels", channels, "head", head)
        check_odd_kernel("kernel_att", kernel_att)
        check_odd_kernel("kernel_conv", kernel_conv)
        check_memory_limit("memory_limit_mb", memory_limit_mb)
        self.head, self.head_dim = head, channels // head
        self.kernel_att, self.kernel_conv = kernel_att, kernel_conv
        self.memory_limit_mb = memory_limit_mb
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.conv_p = nn.Conv2d(2, self.head_dim, 1)
        self.gate = _WindowSoftmax(kind="local")
        self.fc = nn.Conv2d(3 * head, kernel_conv**2, 1, bias=False)
        self.dep_conv = nn.Conv2d(
            kernel_conv**2 * self.head_dim,
            channels,
            kernel_conv,
            padding=kernel_conv // 2,
            groups=self.head_dim,
            bias=False,
        )
        self.rate1 = nn.Parameter(torch.full((1,), 0.5))
        self.rate2 = nn.Parameter(torch.full((1,), 0.5))
        with torch.no_grad():  # the shift operator: output group g, input i of k² takes offset i
            shift = torch.zeros(kernel_conv**2, kernel_conv, kernel_conv)
            for i in range(kernel_conv**2):
                shift[i, i // kernel_conv, i % kernel_conv] = 1.0
            self.dep_conv.weight.copy_(shift.expand(channels, -1, -1, -1))

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c, h, w = q.shape
        n, d, kk = b * self.head, self.head_dim, self.kernel_att
        check_attention_memory(type(self).__name__, n * kk * kk * h * w, q.dtype, self.memory_limit_mb)
        pad = kk // 2
        pe = self.conv_p(position_grid(h, w, q.device).to(q.dtype))  # (1, d, H, W)
        rows, cols = reflect_index(h, pad, q.device), reflect_index(w, pad, q.device)

        def padded(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(2, rows).index_select(3, cols)

        q = q.reshape(n, d, h, w) * d**-0.5
        k_pad, v_pad, pe_pad = padded(k.reshape(n, d, h, w)), padded(v.reshape(n, d, h, w)), padded(pe)
        offsets = [(i, j) for i in range(kk) for j in range(kk)]  # nn.Unfold's order
        # q . (k_j + pe_i - pe_j) as q . k_j + q . (pe_i - pe_j): the key slices are views and the position term
        # is one image wide, so backward keeps no (B*C*H*W)-sized tensor per window offset (nn.Unfold keeps k²)
        logits = torch.stack(
            [
                (q * k_pad[..., i : i + h, j : j + w]).sum(1) + (q * (pe - pe_pad[..., i : i + h, j : j + w])).sum(1)
                for i, j in offsets
            ],
            dim=1,
        )  # (B*head, k², H, W)
        att = self.gate(logits)
        out = sum(att[:, o : o + 1] * v_pad[..., i : i + h, j : j + w] for o, (i, j) in enumerate(offsets))
        return out.reshape(b, c, h, w)

    def _convolution(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c, h, w = q.shape
        f_all = self.fc(torch.cat([t.reshape(b, self.head, self.head_dim, h * w) for t in (q, k, v)], 1))
        f_conv = f_all.permute(0, 2, 1, 3).reshape(b, self.head_dim * self.kernel_conv**2, h, w)
        return self.dep_conv(f_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        return self.rate1 * self._attention(q, k, v) + self.rate2 * self._convolution(q, k, v)
