"""Sliding-window gather/scatter written with pads, strided slices and reshapes; ceil-mode and adaptive mean pooling.

``F.unfold`` / ``F.fold`` do the same gather and scatter, but ``F.fold`` only exports to ONNX from opset 18
(``Col2Im``). These versions export at opset 17, give the same numbers as PyTorch's, and slice with offsets
counted from the ends, so an export with dynamic H, W stays valid at other sizes. Adaptive pooling is a product
with pooling matrices built by tensor arithmetic from the input's size (``adaptive_avg_pool2d`` does not export
when the sizes do not divide each other, and matrices built from Python numbers would freeze the traced size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def neighbourhoods(x: torch.Tensor, kernel: int, stride: int = 1) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, k², ceil(H/s), ceil(W/s))``: the zero-padded ``k x k`` neighbourhood
    (padding ``k // 2``, odd k) of every ``s``-th position, offsets row-major (as ``F.unfold``)."""
    p = kernel // 2
    xp = F.pad(x, (p, p, p, p))
    # Offset i covers padded rows i, i + s, ... up to the last that still has a whole window, k - 1 - i rows
    # before the end: ends counted from the end keep the slices free of H and W (dynamic ONNX axes).
    cols = [
        xp[..., i : (i - kernel + 1) or None : stride, j : (j - kernel + 1) or None : stride]
        for i in range(kernel)
        for j in range(kernel)
    ]
    return torch.stack(cols, dim=2)


def fold_neighbourhoods(cols: torch.Tensor, height: int, width: int, kernel: int, stride: int = 1) -> torch.Tensor:
    """Inverse scatter of :func:`neighbourhoods`: ``(B, C, k², h, w)`` summed back into ``(B, C, H, W)``
    (``F.fold`` with padding ``k // 2``): every value is added at the position it was gathered from."""
    b, c, _, oh, ow = cols.shape
    p = kernel // 2
    out = None
    for idx in range(kernel * kernel):
        i, j = divmod(idx, kernel)
        t = cols[:, :, idx]
        if stride > 1:  # put the values on every s-th position, zeros between
            t = F.pad(t[:, :, :, None, :, None], (0, stride - 1, 0, 0, 0, stride - 1))
            t = t.reshape(b, c, oh * stride, ow * stride)
        # every offset's map shifted by (i, j) on one canvas of (s·oh + k - 1) x (s·ow + k - 1)
        t = F.pad(t, (j, kernel - 1 - j, i, kernel - 1 - i))
        out = t if out is None else out + t
    return out[..., p : p + height, p : p + width]


def mean_pool_ceil(x: torch.Tensor, size: int) -> torch.Tensor:
    """``avg_pool2d(x, size, ceil_mode=True)``: means over ``size x size`` cells, partial cells at the bottom
    and right averaging only their real pixels (onnxruntime's ceil-mode divisor is the same)."""
    return x if size == 1 else F.avg_pool2d(x, size, ceil_mode=True)


def adaptive_pool_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """``(n_out, n_in)`` matrix ``P`` with ``P @ v == adaptive_avg_pool1d(v, n_out)`` (PyTorch's bins: row i averages
    ``[floor(i·n_in/n_out), ceil((i+1)·n_in/n_out))``), in ``like``'s dtype and device; also for ``n_out > n_in``."""
    i = torch.arange(n_out, device=like.device).unsqueeze(1)
    j = torch.arange(n_in, device=like.device).unsqueeze(0)
    start = torch.div(i * n_in, n_out, rounding_mode="floor")
    end = -torch.div(-(i + 1) * n_in, n_out, rounding_mode="floor")
    inside = (j >= start) & (j < end)
    return inside.to(like.dtype) / (end - start).to(like.dtype)


def resize_mean(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(x, (height, width))`` as two matrix products (see :func:`adaptive_pool_matrix`)."""
    h, w = x.shape[-2:]
    return adaptive_pool_matrix(h, height, x) @ x @ adaptive_pool_matrix(w, width, x).transpose(0, 1)
