"""Shared parts of the zoo: channel rounding, activation and gate factories, argument checks.

Every module in the zoo applies its attention weights through one submodule named ``gate``
(see :class:`Gate`), so :mod:`attnyolo.viz` can capture the weights with a forward hook on
``module.gate`` for any module, without knowing its internals. Each gate declares its kind
(:mod:`attnyolo.attention.gate_kinds`), which fixes the layout of the weights it returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attnyolo.attention.gate_kinds import GateKind, GateModule

LayerType = str | type | Callable[..., nn.Module] | None

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "swish": lambda: nn.SiLU(inplace=True),
    "gelu": nn.GELU,
    "mish": lambda: nn.Mish(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "hard_swish": lambda: nn.Hardswish(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": lambda: nn.Hardsigmoid(inplace=False),
    "hardsigmoid": lambda: nn.Hardsigmoid(inplace=False),
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never below ``min_value`` nor below
    ``round_limit * v`` (the MobileNet/timm convention for reduced channel counts)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def reduced_channels(
    channels: int,
    rd_ratio: float,
    rd_channels: int | None = None,
    rd_divisor: int = 8,
    round_limit: float = 0.0,
) -> int:
    """Hidden width of a squeeze/excite style bottleneck (timm's ``rd_*`` convention).

    ``rd_channels`` wins when given; otherwise ``make_divisible(channels * rd_ratio, rd_divisor)``.
    ``rd_divisor=1`` with ``round_limit=0`` gives the paper's plain ``channels // r`` rounding.
    """
    if rd_channels is not None:
        check_positive_int("rd_channels", rd_channels)
        return int(rd_channels)
    check_positive("rd_ratio", rd_ratio)
    check_positive_int("rd_divisor", rd_divisor)
    return make_divisible(channels * rd_ratio, rd_divisor, round_limit=round_limit)


def create_act(layer: LayerType, **kwargs) -> nn.Module:
    """Build an activation (or gate) from a name (``"relu"``, ``"sigmoid"``...), a class or a factory."""
    if layer is None:
        return nn.Identity()
    if isinstance(layer, nn.Module):
        raise ValueError("act_layer/gate_layer must be a name, class or factory, not a module instance")
    if isinstance(layer, str):
        key = layer.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {layer!r}; choose one of {sorted(_ACTIVATIONS)}")
        return _ACTIVATIONS[key]()
    return layer(**kwargs)


class _SingleValueSafeBatchNorm:
    """Mixin for ``nn.BatchNorm*d``: train also when a channel holds a single value.

    Batch statistics of one value are undefined (PyTorch raises, and normalising a value by itself would
    output ``bias`` whatever the input). In that case only, the layer normalises with its running
    statistics, as in eval mode, and leaves them unchanged. Otherwise it is exactly the BatchNorm it mixes
    into (same parameters, buffers and state-dict keys), so reference weights load without a key map.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, ...) -> (B, C, ...), as the BatchNorm it mixes into."""
        if self.training and self.track_running_stats and x.numel() == x.shape[1]:
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


class SafeBatchNorm2d(_SingleValueSafeBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that also trains on one value per channel (batch 1 after global pooling)."""


class SafeBatchNorm1d(_SingleValueSafeBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that also trains on one value per channel (a one-frame clip at batch 1)."""


class Gate(GateModule):
    """The attention weights' exit point: ``forward(w)`` returns ``activation(w)``.

    Modules call ``x * self.gate(logits)``; a forward hook on ``gate`` sees the weights
    actually applied, whatever the module. ``kind`` declares what they are (``"channel"``,
    ``"spatial"``, ... see :mod:`attnyolo.attention.gate_kinds`); ``layout`` only for branch gates.
    """

    def __init__(self, layer: LayerType = "sigmoid", *, kind: GateKind, layout: str | None = None):
        super().__init__(kind=kind, layout=layout)
        self.fn = create_act(layer)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Logits -> ``activation(logits)``, the weights (the logits' shape for element-wise ones)."""
        return self.fn(w)


class ScalesInput:
    """Mixin for modules whose output is exactly ``x * s``: ``forward(x) = x * attention_scale(x)``.

    Subclasses implement ``attention_scale(x)``, returning the scale ``s`` that broadcasts over ``x`` (a
    ``(B, C, 1, 1)`` channel gate, a ``(B, 1, H, W)`` spatial map...). The hook lets a wrapper act on the small
    ``s`` instead of the full output: the identity-start adapter (:class:`attnyolo.graph.ultralytics.AttentionLayer`)
    computes ``x * (1 + γ(s - 1))``, one pass over the feature map, for ``x + γ(x s - x)``. Only modules whose
    output is ``x * s`` with nothing after the product may use it.
    """

    def attention_scale(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): ``x * attention_scale(x)``, the scale broadcast."""
        return x * self.attention_scale(x)


class MultiGate(Gate):
    """A gate over several logits that broadcast together: ``act(w1) * act(w2) * ...`` (or their sum).

    For modules whose weights come as factors (Coordinate Attention's H and W strips) or as parallel
    branches (polarized attention): the product/sum is formed inside the gate, so one forward hook on
    ``gate`` still sees the full weight map that multiplies ``x``.
    """

    def __init__(self, layer: LayerType = "sigmoid", combine: str = "prod", *, kind: GateKind):
        super().__init__(layer, kind=kind)
        if combine not in ("prod", "sum"):
            raise ValueError(f"combine must be 'prod' or 'sum', got {combine!r}")
        self.combine = combine

    def forward(self, *ws: torch.Tensor) -> torch.Tensor:
        """Logits that broadcast together -> weights of their broadcast shape."""
        out = self.fn(ws[0])
        for w in ws[1:]:
            out = out * self.fn(w) if self.combine == "prod" else out + self.fn(w)
        return out


# ---- pooling ----------------------------------------------------------------------------------------


def mean_pool(x: torch.Tensor, dim: int | tuple[int, ...], keepdim: bool = True) -> torch.Tensor:
    """``x.mean(dim, keepdim)``, computed as a sum divided by the element count.

    Same values (to rounding) and cheaper training: ``mean``'s backward writes a full-size ``grad / n``, while
    ``sum``'s backward is a broadcast view and the division happens on the small pooled tensor (SE-like modules
    train about a third faster on CPU). Half-precision inputs are summed in float32, as ``mean`` does, so a
    large map cannot overflow.
    """
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    if not _needs_grad(x):  # no backward to save: mean is the same sum-then-divide in one op
        return x.mean(dim, keepdim=keepdim, dtype=acc).to(x.dtype)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    n = math.prod(x.shape[d] for d in dims)
    return (x.sum(dims, keepdim=keepdim, dtype=acc) / n).to(x.dtype)


def _needs_grad(x: torch.Tensor) -> bool:
    return x.requires_grad and torch.is_grad_enabled()


def channel_max(x: torch.Tensor) -> torch.Tensor:
    """``max_c(x)`` as ``(B, 1, H, W)``.

    ``max(dim).values``, not ``amax``: the same values, but ``amax``'s backward compares every element with the
    maximum to share the gradient between ties (several full-size passes, 3-5x slower forward+backward on
    CPU), while ``max`` routes it to the recorded index, as a max-pooling layer does.
    """
    return x.max(dim=1, keepdim=True).values if _needs_grad(x) else x.amax(dim=1, keepdim=True)


def global_max_pool(x: torch.Tensor) -> torch.Tensor:
    """``max_hw(x)`` as ``(B, C, 1, 1)``; like :func:`channel_max`, routes the gradient by index (not ``amax``)."""
    return F.adaptive_max_pool2d(x, 1) if _needs_grad(x) else x.amax((2, 3), keepdim=True)


# ---- argument checks: each raises ValueError naming the parameter --------------------------------


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_odd_kernel(name: str, value) -> None:
    check_positive_int(name, value)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd so the output keeps its size, got {value}")


def check_divisible(name: str, value: int, divisor_name: str, divisor: int) -> None:
    if value % divisor:
        raise ValueError(f"{name}={value} must be divisible by {divisor_name}={divisor}")


def check_unit_interval(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


# ---- attention memory budget ------------------------------------------------------------------------------


def check_memory_limit(name: str, value) -> None:
    """``value`` is ``None`` (no limit) or a positive number of MiB."""
    if value is not None:
        check_positive(name, value)


def check_attention_memory(module: str, numel: int, dtype: torch.dtype, limit_mb: float | None) -> None:
    """Refuse, before allocating it, an attention matrix of ``numel`` elements larger than ``limit_mb`` MiB.

    Full self-attention over ``N`` positions stores an ``N x N`` matrix per image and head (``O(N^2)``),
    which at detector resolutions runs out of memory long before anything else; a ``ValueError`` naming
    ``memory_limit_mb`` says what would be allocated and how to avoid it.
    """
    if limit_mb is None:
        return
    mb = int(numel) * dtype.itemsize / 2**20
    if mb > limit_mb:
        raise ValueError(
            f"{module}: the attention matrix for this input would take {mb:,.0f} MiB, above "
            f"memory_limit_mb={limit_mb:g}; use a smaller input or batch, sub-sampling where the module offers "
            f"it, or raise memory_limit_mb (None disables the check)"
        )
