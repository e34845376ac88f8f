"""The adapter: one zoo attention as one Ultralytics layer (:class:`AttentionLayer`, one subclass ``ay_<name>`` per
zoo entry), with its identity start. How Ultralytics finds and builds it is :mod:`attnyolo.graph.ultralytics`.

Ultralytics' parse_model hands the adapter its input channels (``ch``, the output channels of the layers so far,
and ``f``, the row's ``from``; see :mod:`attnyolo.graph.ultralytics`), so a YAML never carries a channel count.

Adapter row format: ``[-1, 1, ay_<name>, []]`` or ``[-1, 1, ay_<name>, [{hparam: value}]]``; an optional
second dict holds adapter options: ``[-1, 1, ay_cbam, [{}, {identity_start: false}]]``.

Checkpoints: an adapter pickles as ``attnyolo.graph.adapter.ay_<name>``; this module creates that class on first
access (module ``__getattr__``), so unpickling a saved model imports attnyolo and finds it in a fresh process.
Checkpoints written before the adapter had its own module (main up to e2efe6e) name
``attnyolo.graph.ultralytics.ay_<name>``: that module still resolves those names, and :func:`attnyolo.graph.register`
allows them for ``weights_only`` loading.

Identity start (on by default; option ``identity_start``): the adapter computes ``y = x + gamma * (attn(x) - x)``
with one learnable scalar ``gamma`` (state-dict key ``model.<i>.gamma``) initialised to 0, so an inserted layer
starts as an exact identity (``x + 0 * d == x`` bit for bit) and a model with transferred base weights reproduces
the base model's outputs and metrics before any training, in the neck and in the backbone. It is the ReZero
scheme (Bachlechner et al. 2020, https://arxiv.org/abs/2003.04887; the gamma of SAGAN): at the first step the
attention's own parameters get no gradient (it is scaled by ``gamma = 0``) but ``gamma`` does
(``dL/dgamma = <dL/dy, attn(x) - x>``), so ``gamma`` leaves 0 at the first optimiser step (with a non-zero
learning rate) and the attention learns from the next; how far it moves is logged by
:func:`attnyolo.finetune.add_gamma_logging`. ``gamma`` is a "weight" for Ultralytics' optimiser, so weight decay
pulls it gently back towards the identity. The adapter returns its output in its input's memory format (a few
modules return permuted views, and the next convolution would otherwise round differently).

Modules that already start as an exact identity by their paper's initialisation (a zero-initialised last layer
or gain; today ``gca`` (GC), ``sagan``, ``nonlocal``, ``nl``, ``gct``, ``cc``, ``danet``, ``gltr``, ``tmhsa``, ``stnl``)
get no gamma: wrapped, they would sit on a saddle point where neither moves (``gamma``'s gradient ``attn(x) - x``
is 0, and the module's gradients are scaled by ``gamma = 0``). The adapter finds them by running the new module
once on a fixed 8x8 probe and checking ``attn(x) == x`` exactly, so the rule needs no list and covers new zoo
entries. ``identity_start: false`` (``attnyolo.insert(..., identity_start=False)``) gives ``y = attn(x)``.

Rows written without options mean identity start, so the YAMLs stay clean. A pickled model saved before gamma
existed unpickles with ``gamma = None`` (its attention applied fully, as it was trained); a state dict that holds
all of a layer's attention tensors but no ``gamma`` (a model trained before gamma existed, loaded by Ultralytics'
key matching) sets ``gamma = 1``, i.e. the attention applied fully as it was trained.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.modules import module as _torch_module

from attnyolo.attention._base import ScalesInput
from attnyolo.graph.errors import BuildError, ShapeError
from attnyolo.graph.layers import ROW_PREFIX, class_name
from attnyolo.registry import available, describe

__all__ = ["AttentionLayer", "adapter_class", "adapter_classes", "class_name"]


class AttentionLayer(nn.Module):
    """A zoo attention as one Ultralytics layer; subclasses ``ay_<name>`` fix the zoo name.

    ``forward(x) = x + gamma * (attn(x) - x)`` with ``gamma`` initialised to 0 (identity start, the default), or
    ``attn(x)`` when ``gamma`` is ``None`` (``identity_start: false``, or a module that starts as the identity by
    itself); see the module docstring. Computed as ``torch.lerp(x, attn(x), gamma)`` (one pass over the map, not
    three), and for modules that declare ``attn(x) = x * s`` (:class:`~attnyolo.attention._base.ScalesInput`) as
    ``x * lerp(1, s, gamma)``: gamma is applied to the small scale ``s`` and the map is read and written once.
    Both are exact at ``gamma = 0`` (``x + 0 * d``, ``x * 1``) and at ``gamma = 1`` (``attn(x)``).

    Args:
        ch: Ultralytics' list of output channels of the layers built so far (``[c_in]`` at layer 0),
            handed over by the parse_model hook; only ``ch[f]`` is read, the list is never kept.
        f: the row's ``from`` (an int: an attention reads one feature map).
        hparams: the zoo module's hyper-parameters (``{rd_ratio: 0.0625}``); defaults are the paper's.
        options: adapter options: ``identity_start`` (bool, default ``True``).

    Attributes:
        gamma: the learnable scalar gate of the identity start, or ``None``.
        start: ``"gamma"`` (identity start through ``gamma``), ``"module"`` (the module's own initialisation is
            the identity), or ``"off"``.
    """

    attention: ClassVar[str] = ""
    OPTIONS: ClassVar[frozenset] = frozenset({"identity_start"})

    def __init__(self, ch: Any = None, f: Any = None, hparams: Mapping | None = None, options: Mapping | None = None):
        super().__init__()
        name = type(self).__name__
        if not isinstance(ch, list):
            raise BuildError(
                f"{name} needs its input channels from Ultralytics: call attnyolo.register() (or import attnyolo) "
                "before Ultralytics builds a model that contains it"
            )
        if isinstance(f, list) or not isinstance(f, int):
            raise BuildError(f"{name} reads exactly one layer; its 'from' must be an int, got {f!r}")
        c1 = ch[f]
        if not isinstance(c1, int):
            raise ShapeError(f"{name} cannot follow a layer that outputs several tensors (channels {c1!r})")
        hparams, options = dict(hparams or {}), dict(options or {})
        unknown = sorted(set(options) - self.OPTIONS)
        if unknown:
            raise BuildError(f"{name}: unknown adapter option(s) {unknown}; known: {sorted(self.OPTIONS) or 'none'}")
        identity_start = options.get("identity_start", True)
        if not isinstance(identity_start, bool):
            raise BuildError(f"{name}: option identity_start must be true or false, got {identity_start!r}")
        self.channels = c1
        spec = describe(self.attention)
        self.attn = spec.create(c1, **hparams)
        if not identity_start:
            self.start = "off"
        elif _starts_as_identity(self.attn, c1, int(spec.frames(hparams) or 1)):
            self.start = "module"
        else:
            self.start = "gamma"
        self.gamma = nn.Parameter(torch.zeros(())) if self.start == "gamma" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma
        if gamma is None:
            return _same_layout(self.attn(x), x)
        attn = self.attn
        if isinstance(attn, ScalesInput) and not _has_hooks(attn):
            # attn(x) = x * s: gamma goes on the small s, x * (1 + gamma (s - 1)), one pass over the map
            # (attn's forward is not called, so a hook on attn itself takes the general path below)
            s = attn.attention_scale(x)
            return x * torch.lerp(s.new_ones(()), s, gamma)
        # x + gamma (y - x) in one fused pass; the result takes x's memory format whatever y's layout
        y = attn(x)
        if y.dtype != x.dtype:  # lerp wants one dtype; the arithmetic form promotes as before
            return x + gamma * (y - x)
        if not torch.is_grad_enabled() and not torch.jit.is_tracing() and _owned_like(y, x) and not _has_hooks(attn):
            # inference: y is a temporary of the module's, so write the result into it (on CPU every new
            # feature-map-sized buffer costs an mmap and its page faults); not while tracing: the TorchScript ONNX
            # exporter (YOLOv5's export.py, torch.onnx.export(dynamo=False)) cannot translate lerp(..., out=)
            return torch.lerp(x, y, gamma, out=y)
        return torch.lerp(x, y, gamma)

    def __setstate__(self, state: dict) -> None:
        # a model pickled before the identity start existed: no gamma, the attention applied fully
        super().__setstate__(state)
        self._parameters.setdefault("gamma", None)
        self.__dict__.setdefault("start", "off")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        key = prefix + "gamma"
        attn_keys = [prefix + k for k in self.state_dict() if k.startswith("attn.")]
        from_ungated = (
            self.gamma is not None
            and key not in state_dict
            and bool(attn_keys)
            and all(k in state_dict for k in attn_keys)
        )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)
        if from_ungated:  # trained before gamma existed, i.e. with the attention applied fully: gamma = 1
            with torch.no_grad():
                self.gamma.fill_(1.0)
            if key in missing_keys:
                missing_keys.remove(key)

    def extra_repr(self) -> str:
        return f"{self.attention!r}, channels={self.channels}, start={self.start!r}"


def _owned_like(y: torch.Tensor, x: torch.Tensor) -> bool:
    """``y`` can take the result in place: same shape, dtype and layout as ``x``, and no memory shared with it."""
    return (
        y.shape == x.shape
        and y.dtype == x.dtype
        and y.stride() == x.stride()
        and y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    )


def _has_hooks(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or _torch_module._global_forward_hooks
        or _torch_module._global_forward_pre_hooks
    )


def _same_layout(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` in ``x``'s memory format. A few modules return permuted views (sagan, detr, tam); the next conv would
    then take another kernel path and round differently, so an identity start would no longer be bit-exact."""
    if y.stride() == x.stride() or y.dim() != 4:
        return y
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return y.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _starts_as_identity(module: nn.Module, channels: int, batch: int) -> bool:
    """True when ``module`` maps a fixed random 8x8 probe exactly to itself (its own identity initialisation)."""
    x = torch.randn(batch, channels, 8, 8, generator=torch.Generator().manual_seed(0), device="cpu")  # own RNG
    x = x.to(next(module.parameters(), x).device)
    training = module.training
    try:
        with torch.no_grad():
            y = module.eval()(x)
    except Exception:  # noqa: BLE001 - a module that cannot run the probe is not known to be the identity
        return False
    finally:
        module.train(training)
    return isinstance(y, torch.Tensor) and y.shape == x.shape and torch.equal(y, x)


_ADAPTERS: dict[str, type[AttentionLayer]] = {}


def adapter_class(attention: str) -> type[AttentionLayer]:
    """The adapter class ``ay_<attention>``, created once, importable as this module's attribute."""
    spec = describe(attention)  # unknown names raise with the closest names
    name = class_name(spec.name)
    cls = _ADAPTERS.get(name)
    if cls is None:
        doc = f"Ultralytics layer for attnyolo's {spec.name!r} ({spec.paper}, {spec.year}); see AttentionLayer."
        cls = type(name, (AttentionLayer,), {"attention": spec.name, "__module__": __name__, "__doc__": doc})
        cls.__qualname__ = name
        _ADAPTERS[name] = cls
        setattr(sys.modules[__name__], name, cls)  # pickle finds classes by module attribute
    return cls


def adapter_classes() -> list[type[AttentionLayer]]:
    """Every adapter class created so far in this process (:func:`attnyolo.graph.register` creates them all)."""
    return list(_ADAPTERS.values())


def __getattr__(name: str) -> Any:
    # Unpickling a checkpoint asks this module for ay_<name> before anything registered it.
    if name.startswith(ROW_PREFIX):
        for attention in available():
            if class_name(attention) == name:
                return adapter_class(attention)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
