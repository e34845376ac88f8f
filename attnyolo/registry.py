"""The zoo's registry: attention name -> :class:`ModuleSpec`, recorded by a decorator next to each class.

``available()``, ``describe()``, ``create()``, the CLI tables, the docs table and the parametrised
tests all read from here, so a new module is listed, documented and tested by adding one decorator.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from attnyolo.errors import AttnYoloError

# The survey's taxonomy (Guo et al., "Attention mechanisms in computer vision: a survey", 2022),
# with self-attention as its own family as in the brief.
CATEGORIES = (
    "channel",
    "spatial",
    "temporal",
    "branch",
    "channel_spatial",
    "spatial_temporal",
    "self_attention",
)


class UnknownModuleError(KeyError, ValueError):
    """An attention name that is not in the registry; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class HyperparameterError(AttnYoloError):
    """Hyper-parameters a zoo module does not take, or lacks (a temporal module without ``frames``)."""


@dataclass(frozen=True)
class ModuleSpec:
    """What attnyolo knows about one zoo entry.

    Attributes:
        name: registry key, lower case (``"cbam"``); timm's ``create_attn`` names are kept where they exist.
        cls: the ``nn.Module`` class; built as ``cls(channels, **preset, **hparams)``.
        category: one of :data:`CATEGORIES`.
        paper: paper title; ``year`` and ``url`` locate it.
        preset: keyword arguments this name fixes (``ecam`` = ECA with ``use_mlp=True``).
        needs_frames: input is a clip batch ``(B*T, C, H, W)``; the module takes ``frames=T``.
        batch1_train: works with batch 1 in train mode (no BatchNorm over a single value).
        onnx: exports to ONNX (opset 17) and runs in onnxruntime; ``onnx_note`` says why not.
        onnx_dynamic: (with ``onnx``) exported with dynamic batch, height and width axes, the graph runs at
            other input sizes (Ultralytics' ``export(dynamic=True)``); ``onnx_note`` says why not.
        constraints: human-readable input constraints (e.g. channels divisible by ``groups``),
            checked by the module's constructor with a ``ValueError``.
        channel_params: integer hyper-parameters the channel constraint involves, which the insertion engine
            searches for a value that fits every scale when a layer's channels are refused; empty: the integer
            hyper-parameters that ``constraints`` names (see :mod:`attnyolo.graph.hints`).
        reference: an independent implementation the tests compare against (``"timm:cbam"``).
        notes: where and why this implementation differs from the paper or the reference.
    """

    name: str
    cls: type[nn.Module]
    category: str
    paper: str
    year: int
    url: str = ""
    preset: dict[str, Any] = field(default_factory=dict)
    needs_frames: bool = False
    batch1_train: bool = True
    onnx: bool = True
    onnx_dynamic: bool = True
    onnx_note: str = ""
    constraints: str = ""
    channel_params: tuple[str, ...] = ()
    reference: str = ""
    notes: str = ""

    @property
    def summary(self) -> str:
        """First line of the class docstring."""
        doc = inspect.getdoc(self.cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def defaults(self) -> dict[str, Any]:
        """Hyper-parameters and their defaults for this name (class defaults overridden by the preset)."""
        out = {}
        for p in list(inspect.signature(self.cls.__init__).parameters.values())[2:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[p.name] = p.default if p.default is not p.empty else None
        out.update(self.preset)
        return out

    def frames(self, hparams: Mapping[str, Any]) -> int | None:
        """The clip length ``T`` that ``hparams`` (or the preset) give a temporal module; ``None`` for other
        modules or when it is missing. Inputs are then clips stacked as ``(B*T, C, H, W)``."""
        if not self.needs_frames:
            return None
        return hparams.get("frames", self.preset.get("frames"))

    def check_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Raise :class:`HyperparameterError` for names this module does not take, or a temporal module's missing
        ``frames`` (values are checked by the constructor, which raises ``ValueError`` naming the parameter)."""
        allowed = set(self.defaults)
        unknown = sorted(set(hparams) - allowed)
        if unknown:
            raise HyperparameterError(
                f"{self.name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(sorted(allowed)) or 'none'}"
            )
        if self.needs_frames and self.frames(hparams) is None:
            raise HyperparameterError(
                f"{self.name!r} is a temporal module: pass frames=T (clip length; the batch is B*T frames)"
            )

    def create(self, channels: int, **hparams: Any) -> nn.Module:
        """Build the module for ``channels`` input channels; bad hyper-parameter names raise
        :class:`HyperparameterError` (see :meth:`check_hparams`)."""
        self.check_hparams(hparams)
        return self.cls(channels, **{**self.preset, **hparams})


_REGISTRY: dict[str, ModuleSpec] = {}


def register(name: str, *, category: str, paper: str, year: int, **spec: Any) -> Callable[[type], type]:
    """Class decorator recording a :class:`ModuleSpec` under ``name``; stack it to register presets."""
    key = name.lower()
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")

    def decorate(cls: type) -> type:
        if key in _REGISTRY and _REGISTRY[key].cls is not cls:
            raise ValueError(f"attention name {key!r} is already registered by {_REGISTRY[key].cls.__qualname__}")
        _REGISTRY[key] = ModuleSpec(name=key, cls=cls, category=category, paper=paper, year=year, **spec)
        return cls

    return decorate


def _load_zoo() -> None:
    # Importing the zoo package runs every @register decorator once.
    import attnyolo.attention  # noqa: F401


def _normalise_category(category: str) -> str:
    key = category.lower().replace("-", "_").replace(" ", "_")
    if key in {"self", "selfattention"}:
        key = "self_attention"
    if key not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; choose one of {', '.join(CATEGORIES)}")
    return key


def available(category: str | None = None) -> list[str]:
    """Sorted names in the zoo, optionally of one category (``"channel"``, ``"self_attention"``...)."""
    _load_zoo()
    if category is None:
        return sorted(_REGISTRY)
    cat = _normalise_category(category)
    return sorted(k for k, s in _REGISTRY.items() if s.category == cat)


def describe(name: str) -> ModuleSpec:
    """The :class:`ModuleSpec` of ``name``; unknown names raise an error listing the closest names."""
    _load_zoo()
    key = str(name).lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `attnyolo list`"
        raise UnknownModuleError(f"unknown attention {name!r}{hint}")
    return _REGISTRY[key]


def create(name: str, channels: int, **hparams: Any) -> nn.Module:
    """Build zoo module ``name`` for ``channels`` input channels (shape-preserving ``nn.Module``)."""
    return describe(name).create(channels, **hparams)


def specs() -> list[ModuleSpec]:
    """Every spec, sorted by name."""
    _load_zoo()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
