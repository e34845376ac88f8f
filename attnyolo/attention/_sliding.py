"""Sliding-window gather/scatter and ceil-mode mean pooling, written with pads, strided slices and reshapes.

``F.unfold`` / ``F.fold`` and ``avg_pool2d(ceil_mode=True)`` do the same, but ``F.fold`` only exports to ONNX
from opset 18 (``Col2Im``), and runtimes disagree on the divisor of ceil-mode pooling windows that overhang
the map. These versions export at opset 17 and give the same numbers as PyTorch's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def neighbourhoods(x: torch.Tensor, kernel: int, stride: int = 1) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, k², ceil(H/s), ceil(W/s))``: the zero-padded ``k x k`` neighbourhood
    (padding ``k // 2``, odd k) of every ``s``-th position, offsets row-major (as ``F.unfold``)."""
    h, w = x.shape[-2:]
    p = kernel // 2
    oh, ow = math.ceil(h / stride), math.ceil(w / stride)
    xp = F.pad(x, (p, p, p, p))
    span_h, span_w = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    cols = [xp[..., i : i + span_h : stride, j : j + span_w : stride] for i in range(kernel) for j in range(kernel)]
    return torch.stack(cols, dim=2)


def fold_neighbourhoods(cols: torch.Tensor, height: int, width: int, kernel: int, stride: int = 1) -> torch.Tensor:
    """Inverse scatter of :func:`neighbourhoods`: ``(B, C, k², h, w)`` summed back into ``(B, C, H, W)``
    (``F.fold`` with padding ``k // 2``): every value is added at the position it was gathered from."""
    b, c, _, oh, ow = cols.shape
    p = kernel // 2
    hp, wp = height + 2 * p, width + 2 * p
    span_h, span_w = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    out = None
    for idx in range(kernel * kernel):
        i, j = divmod(idx, kernel)
        t = cols[:, :, idx]
        if stride > 1:  # put the values on every s-th position, zeros between
            t = F.pad(t[:, :, :, None, :, None], (0, stride - 1, 0, 0, 0, stride - 1))
            t = t.reshape(b, c, oh * stride, ow * stride)[..., :span_h, :span_w]
        t = F.pad(t, (j, wp - j - span_w, i, hp - i - span_h))
        out = t if out is None else out + t
    return out[..., p : p + height, p : p + width]


def mean_pool_ceil(x: torch.Tensor, size: int) -> torch.Tensor:
    """``avg_pool2d(x, size, ceil_mode=True)``: means over ``size x size`` cells, partial cells at the bottom
    and right averaging only their real pixels (PyTorch's ceil-mode divisor)."""
    if size == 1:
        return x
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % size, -w % size
    pooled = F.avg_pool2d(F.pad(x, (0, pad_w, 0, pad_h)), size)
    if pad_h or pad_w:
        real = F.pad(x.new_ones(1, 1, h, w), (0, pad_w, 0, pad_h))
        pooled = pooled / F.avg_pool2d(real, size)
    return pooled
