"""Scaffolding shared by the zoo's reference tests: random weights, weight copying, output comparison, gate capture.

The test files import it as ``from attention_helpers import ...``: pytest's default ``prepend`` import mode puts the
folder of a test file (this one) on ``sys.path``.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def randomise_(module: ModuleT, *, seed: int = 0, std: float = 0.3) -> ModuleT:
    """Draw every parameter from ``N(0, std²)`` and every running mean / variance at random, in place.

    Zero-initialised parameters (last convs, residual gammas, norm shifts) and default statistics (mean 0,
    variance 1) would let a comparison pass although a weight or statistic is ignored or misplaced. The draws
    come from a generator seeded with ``seed``: a test sees the same weights on every run and every worker.
    Returns ``module``, so a call chains: ``randomise_(create("se", 64)).eval()``.

    ``std=0.3`` by default: at 0.5 a deep block in eval mode (Ultralytics PSA, ABlock) reaches outputs in the
    thousands, where fp32 rounding alone (ours and the reference agree to 1e-11 in float64) exceeds 1e-5.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for m in module.modules():
            if getattr(m, "running_var", None) is not None:  # BatchNorm of any dimension, tracking statistics
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return module


def load_weights(ours: nn.Module, ref: nn.Module, rename: dict[str, str] | None = None) -> None:
    """Load ``ref``'s state dict into ``ours`` (strict: every key used, none missing).

    ``rename`` maps a submodule path of ``ref`` to the path of the same submodule in ``ours``
    (``{"conv.bn": "bn"}`` turns ``conv.bn.weight`` into ``bn.weight``); the first matching entry applies.
    """
    state = {}
    for key, value in ref.state_dict().items():
        for old, new in (rename or {}).items():
            if key.startswith(old + "."):
                key = (f"{new}." if new else "") + key[len(old) + 1 :]
                break
        state[key] = value
    ours.load_state_dict(state, strict=True)


def assert_same_output(
    ours: nn.Module, ref: nn.Module, x: torch.Tensor, *, train: bool = False, rtol: float = 1e-5, atol: float = 1e-5
) -> None:
    """``ours`` and ``ref``, both in train or both in eval mode, give the same output for ``x``."""
    ours.train(train)
    ref.train(train)
    with torch.no_grad():
        torch.testing.assert_close(ours(x.clone()), ref(x.clone()), rtol=rtol, atol=atol)


def capture(module: nn.Module, x: torch.Tensor, *names: str) -> tuple[torch.Tensor, ...]:
    """``module(x)`` without gradients, then what each named submodule (default: ``gate``) returned in that call.

    Each named submodule must run exactly once: the weights a test inspects are the ones that were applied.
    """
    names = names or ("gate",)
    seen: dict[str, list] = {name: [] for name in names}
    handles = [
        module.get_submodule(name).register_forward_hook(lambda _m, _i, out, name=name: seen[name].append(out))
        for name in names
    ]
    try:
        with torch.no_grad():
            y = module(x)
    finally:
        for handle in handles:
            handle.remove()
    for name, outs in seen.items():
        assert len(outs) == 1, f"`{name}` ran {len(outs)} times in one forward"
    return (y, *(seen[name][0] for name in names))


def assert_output_is_input_times_gate(module: nn.Module, x: torch.Tensor) -> None:
    """The hook on ``module.gate`` sees one weight per element of ``x``, and the output is ``x`` times them."""
    y, weights = capture(module, x)
    assert weights.shape == x.shape
    torch.testing.assert_close(y, x * weights)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
