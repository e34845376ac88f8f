"""Costs of a model: exact parameters, FLOPs that count every op, CPU latency as a ratio to the baseline.

FLOPs are counted at the ATen level (a ``TorchDispatchMode`` sees every op the forward pass runs), so
parameter-free ops count too: Ultralytics' GFLOPs (thop) and ``torch.utils.flop_counter`` count only
convolutions and matrix products, which makes SimAM look free. Conventions (one multiply-add = 2 FLOPs, as
Ultralytics' GFLOPs):

=====================================  =================================================================
op                                     FLOPs
=====================================  =================================================================
convolution                            2 * out elements * (C_in / groups) * kernel area (+ out elements if bias)
mm, bmm, addmm, baddbmm                2 * M * N * K (+ M * N for the added term)
scaled dot-product attention           4 * B * heads * L * S * E + 5 * B * heads * L * S (softmax)
element-wise (ATen ``pointwise`` tag:  1 per output element (add, mul, sigmoid, silu, relu, exp, div, where...)
  add, mul, sigmoid, silu, ...)
reductions (sum, mean, amax, max...)   1 per input element (var/std: 3)
pooling                                avg/max pool: kernel area per output element; adaptive: 1 per input
softmax / log_softmax                  5 per element (max, subtract, exp, sum, divide)
sort, topk, argsort                    n * log2(n) per sorted row (comparisons)
batch norm (inference)                 2 per element (scale and shift)
layer / group / instance norm          5 per element (+2 with an affine)
bilinear / bicubic interpolation       7 / 31 per output element; nearest: 0 (indexing)
cumsum / cumprod                       1 per element
=====================================  =================================================================

Data movement (views, copies, cat, indexing, padding, nearest upsampling) costs 0. Any other op is counted 0
and listed in :attr:`FlopCount.uncounted`, so a missing rule is visible instead of silent.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

_ZERO = {
    "view",
    "_unsafe_view",
    "reshape",
    "permute",
    "transpose",
    "t",
    "expand",
    "squeeze",
    "unsqueeze",
    "flatten",
    "slice",
    "select",
    "split",
    "split_with_sizes",
    "unbind",
    "chunk",
    "narrow",
    "cat",
    "stack",
    "clone",
    "copy_",
    "_to_copy",
    "contiguous",
    "detach",
    "alias",
    "empty",
    "empty_like",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
    "full_like",
    "fill_",
    "zero_",
    "new_zeros",
    "new_ones",
    "new_empty",
    "new_full",
    "arange",
    "index",
    "index_select",
    "gather",
    "scatter",
    "constant_pad_nd",
    "reflect_pad2d",
    "replication_pad2d",
    "upsample_nearest1d",
    "upsample_nearest2d",
    "upsample_nearest3d",
    "_upsample_nearest_exact2d",
    "pixel_shuffle",
    "pixel_unshuffle",
    "roll",
    "repeat",
    "as_strided",
    "lift_fresh",
    "_local_scalar_dense",
    "meshgrid",
    "linspace",
    "lift_fresh_copy",
    "channel_shuffle",
    "native_channel_shuffle",
    "im2col",
    "col2im",
    "unfold",
    "masked_fill",
    "stride",
    "size",
    "sym_size",
    "sym_stride",
    "resize_",
    "set_",
    "_reshape_alias",
    "diagonal",
    "tril",
    "triu",
    "eye",
    "copy",
    "fill",
    "zero",
    "masked_select",
    "nonzero",
    "topk_indices",
    "item",
    "repeat_interleave",
    "flip",
    "dim",
    "is_same_size",
}
_REDUCE = {
    "sum": 1,
    "mean": 1,
    "amax": 1,
    "amin": 1,
    "max": 1,
    "min": 1,
    "argmax": 1,
    "argmin": 1,
    "prod": 1,
    "logsumexp": 3,
    "var": 3,
    "std": 3,
    "var_mean": 3,
    "std_mean": 3,
    "linalg_vector_norm": 2,
    "norm": 2,
    "any": 1,
    "all": 1,
}
_POOL = {
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "max_pool1d",
    "max_pool2d",
    "max_pool2d_with_indices",
    "max_pool3d",
    "max_pool3d_with_indices",
}
_ADAPTIVE = {
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "_adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "_adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
}
_SOFTMAX = {"_softmax", "softmax", "_log_softmax", "log_softmax"}
_SORT = {"sort", "topk", "argsort", "msort", "kthvalue", "median", "nanmedian"}
_BN = {
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit",
    "native_batch_norm",
    "batch_norm",
    "_batch_norm_impl_index",
    "cudnn_batch_norm",
    "miopen_batch_norm",
}
_NORM = {
    "native_layer_norm",
    "native_group_norm",
    "layer_norm",
    "group_norm",
    "instance_norm",
    "rms_norm",
    "_fused_rms_norm",
}
_INTERP = {
    "upsample_bilinear2d": 7,
    "_upsample_bilinear2d_aa": 7,
    "upsample_linear1d": 3,
    "upsample_bicubic2d": 31,
    "upsample_trilinear3d": 15,
    "grid_sampler_2d": 7,
}
# activations without ATen's pointwise tag: 1 per element like the tagged ones
_ACT = {
    "hardswish",
    "hardsigmoid",
    "gelu",
    "elu",
    "leaky_relu",
    "mish",
    "softplus",
    "hardtanh",
    "relu6",
    "silu",
    "selu",
    "celu",
    "glu",
    "prelu",
    "_prelu_kernel",
    "threshold",
    "log_sigmoid_forward",
    "softshrink",
    "hardshrink",
}
_CUM = {"cumsum", "cumprod", "cummax", "cummin"}
_SDPA = {
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
}


def _numel(x: Any) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 0


def _first_tensor(values: Any) -> torch.Tensor | None:
    for v in values if isinstance(values, (list, tuple)) else [values]:
        if isinstance(v, torch.Tensor):
            return v
    return None


def _conv(args: tuple, out: torch.Tensor) -> int:
    x, w, bias = args[0], args[1], args[2] if len(args) > 2 else None
    transposed = bool(args[6]) if len(args) > 6 else False
    # w is (C_out, C_in / groups, *k), or (C_in, C_out / groups, *k) when transposed: each output (each input,
    # when transposed) element meets w.shape[1] * kernel-area weights
    macs = (x.numel() if transposed else out.numel()) * w.shape[1] * math.prod(w.shape[2:])
    return 2 * macs + (out.numel() if isinstance(bias, torch.Tensor) else 0)


def _matmul(name: str, args: tuple, out: torch.Tensor) -> int:
    if name in {"mm", "bmm"}:
        a = args[0]
        return 2 * out.numel() * a.shape[-1]
    if name in {"addmm", "baddbmm"}:
        a = args[1]
        return 2 * out.numel() * a.shape[-1] + out.numel()
    if name in {"dot", "vdot"}:
        return 2 * args[0].numel()
    if name in {"mv", "addmv"}:
        m = args[0] if name == "mv" else args[1]
        return 2 * m.numel() + (out.numel() if name == "addmv" else 0)
    return 0


def _rule(name: str, func: Any, args: tuple, kwargs: dict, out: Any) -> int | None:
    """FLOPs of one ATen op, or ``None`` when no rule applies."""
    o = _first_tensor(out)
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    if name in _ZERO:
        return 0
    if name in {"convolution", "_convolution", "conv2d", "conv1d", "conv3d", "mkldnn_convolution"}:
        return _conv(args, o)
    if name in {"mm", "bmm", "addmm", "baddbmm", "dot", "vdot", "mv", "addmv"}:
        return _matmul(name, args, o)
    if name in _SDPA:
        q, k = args[0], args[1]
        b_h = math.prod(q.shape[:-2])
        l_, s, e = q.shape[-2], k.shape[-2], q.shape[-1]
        return 4 * b_h * l_ * s * e + 5 * b_h * l_ * s
    if name in _SOFTMAX:
        return 5 * _numel(x)
    if name in _BN:
        return 2 * _numel(x)
    if name in _NORM:
        affine = any(isinstance(a, torch.Tensor) for a in args[1:])
        return (7 if affine else 5) * _numel(x)
    if name in _POOL:
        kernel = args[1] if len(args) > 1 else kwargs.get("kernel_size")
        kernel = [kernel] if isinstance(kernel, int) else list(kernel)
        dims = x.dim() - 2 if x is not None else len(kernel)
        area = math.prod(kernel * dims if len(kernel) == 1 else kernel)
        return area * _numel(o)
    if name in _ADAPTIVE:
        return _numel(x)
    if name in _REDUCE:
        return _REDUCE[name] * _numel(x)
    if name in _SORT:
        if x is None:
            return 0
        dim = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("dim", -1)
        n = x.shape[dim] if x.dim() else 1
        return int((x.numel() // max(n, 1)) * n * math.log2(max(n, 2)))
    if name in _INTERP:
        return _INTERP[name] * _numel(o)
    if name in _CUM:
        return _numel(x)
    if name in _ACT or torch.Tag.pointwise in getattr(func, "tags", ()):
        return _numel(o)
    return None


@dataclass
class FlopCount:
    """Result of :func:`count_flops`: ``total`` FLOPs, per op name, and ops that had no rule (counted 0)."""

    total: int = 0
    by_op: Counter = field(default_factory=Counter)
    uncounted: Counter = field(default_factory=Counter)

    @property
    def gflops(self) -> float:
        return self.total / 1e9


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = FlopCount()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        base = name if name.startswith("_") else name.rstrip("_")  # in-place ops (add_, mul_) as their out-of-place
        flops = _rule(base, func, args, kwargs, out)
        if flops is None:
            self.count.uncounted[name] += 1
        elif flops:
            self.count.total += int(flops)
            self.count.by_op[name] += int(flops)
        return out


def count_flops(model: nn.Module, x: torch.Tensor) -> FlopCount:
    """FLOPs of one inference forward pass ``model(x)`` (eval mode, no grad), every op counted.

    Args:
        model: any module; it is run in eval mode and left in the mode it had.
        x: the input (e.g. ``torch.zeros(1, 3, 320, 320)``).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _Counter() as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.count


def count_params(model: nn.Module) -> int:
    """Exact parameter count (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class Latency:
    """Median batch-1 CPU latency of a model and of the baseline, timed interleaved in one process."""

    ms: float
    baseline_ms: float
    ratio: float
    rounds: int


def interleaved_latency(
    model: nn.Module, baseline: nn.Module, imgsz: int, rounds: int = 30, warmup: int = 5
) -> Latency:
    """Time ``model`` and ``baseline`` alternately (batch 1, CPU, eval, no grad) and compare their medians.

    Alternating the two in one process makes both see the same machine load, so the ratio means something even
    on a shared machine where absolute times are noise.
    """
    from attnyolo.timing import interleaved_times

    nets = [model.float().cpu().eval(), baseline.float().cpu().eval()]
    x = torch.zeros(1, 3, imgsz, imgsz)
    with torch.inference_mode():
        times = interleaved_times([lambda n=n: n(x) for n in nets], repeat=rounds, warmup=warmup)
    ms, base = (statistics.median(t) * 1e3 for t in times)
    return Latency(ms=ms, baseline_ms=base, ratio=ms / base, rounds=rounds)
