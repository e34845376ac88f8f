"""Checks that every attention row of a model YAML, and every attention inside a block, can be built where it sits,
at every scale: the torch side of the engine's checks (it creates and runs modules; the YAML is only read).

For each attention row (or inside option) and each scale: the layer it reads must output one feature map; the zoo
module is created for that layer's channel count (so channel constraints such as "divisible by groups" and missing
``frames`` surface here); and a small forward pass must return the input's shape. Failures are one-line
:class:`ShapeError` / :class:`~attnyolo.registry.HyperparameterError` messages naming the layer, the scale
and the channels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from attnyolo.graph.channels import FEATURE, layer_channels, scale_names
from attnyolo.graph.errors import ModelYAMLError, ShapeError
from attnyolo.graph.hints import hint
from attnyolo.graph.inside import bottlenecks, refuse_temporal
from attnyolo.graph.inside_syntax import inside_rows, option_of, split_option
from attnyolo.graph.layers import attention_name, layers, row_hparams
from attnyolo.registry import ModuleSpec, describe

PROBE_SIZE = (8, 8)  # spatial size of the shape probe: small, non-trivial, like a stride-32 map of a 256 image


def _frozen(x: Any) -> Any:
    if isinstance(x, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in x.items()))
    if isinstance(x, list):
        return tuple(_frozen(v) for v in x)
    return x


_PROBED: dict[Any, None] = {}  # (name, hparams, channels) already shown to build and keep the shape


def probe(
    spec: ModuleSpec,
    channels: int,
    hparams: Mapping[str, Any],
    where: str,
    alternatives: Callable[[], str] | None = None,
) -> int:
    """Create ``spec`` at ``channels`` and check one forward keeps the shape; returns its parameter count.

    ``alternatives`` is called only when the module refuses ``channels``; what it returns (a hint naming
    hyper-parameter values that would fit, see :mod:`attnyolo.graph.hints`) ends the error message.
    """
    try:
        module = spec.create(channels, **hparams)
    except (ValueError, TypeError) as e:
        suggestion = alternatives() if alternatives is not None else ""
        raise ShapeError(f"{where}: {spec.name!r} cannot take {channels} channels: {e}{suggestion}") from None
    n_params = sum(p.numel() for p in module.parameters())
    key = (spec.name, _frozen(dict(hparams)), channels)
    if key in _PROBED:
        return n_params
    batch = int(spec.frames(hparams) or 1)  # a temporal module needs whole clips
    x = torch.randn(batch, channels, *PROBE_SIZE)
    try:
        with torch.no_grad():
            y = module.eval()(x)
    except Exception as e:  # noqa: BLE001 - any failure here means "cannot sit at this place"
        raise ShapeError(f"{where}: {spec.name!r} fails on a {tuple(x.shape)} feature map: {e}") from None
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ShapeError(f"{where}: {spec.name!r} would change the shape {tuple(x.shape)} -> {got}")
    _PROBED[key] = None
    return n_params


def check_inside_rows(cfg: Mapping, scales: Iterable[str | None] | None = None, ch_in: int = 3) -> None:
    """Check every inside option of ``cfg`` at each of ``scales`` (default: every scale the YAML defines): a block
    type with bottlenecks, a known non-temporal zoo module with valid hyper-parameters, and a module that builds
    and keeps the shape at the bottleneck width of every scale (errors name the layer and the scale)."""
    rows = inside_rows(cfg)
    if not rows:
        return
    all_layers = layers(cfg)
    parsed = {}
    for i in rows:
        name, hparams, _ = split_option(option_of(all_layers[i].args))
        spec = describe(name)
        refuse_temporal(spec, f"layer {i} ({all_layers[i].module})")
        spec.check_hparams(hparams)
        parsed[i] = (spec, hparams)
    for scale in list(scales) if scales is not None else (scale_names(cfg) or [None]):
        for i in rows:
            spec, hparams = parsed[i]
            found = bottlenecks(cfg, i, scale, ch_in)
            at = f"layer {i} ({all_layers[i].module} inside" + (f", scale {scale}" if scale else "") + ")"
            probe(spec, found.width, hparams, at)


def check_attention_rows(cfg: Mapping, scales: Iterable[str | None] | None = None, ch_in: int = 3) -> None:
    """Check every attention row of ``cfg`` at each of ``scales`` (default: every scale the YAML defines), and
    every attention inside a block (:func:`check_inside_rows`)."""
    scales = list(scales) if scales is not None else None
    check_inside_rows(cfg, scales, ch_in)
    rows = [x for x in layers(cfg) if attention_name(x.module) is not None]
    if not rows:
        return
    specs = {}
    for x in rows:
        where = f"layer {x.index}: "
        spec = describe(attention_name(x.module))
        hparams, _ = row_hparams(x.module, x.args, where)
        spec.check_hparams(hparams)
        if isinstance(x.from_, list):
            raise ModelYAMLError(f"{where}{x.module} reads one layer; its 'from' must be an int, got {x.from_!r}")
        specs[x.index] = (spec, hparams)

    def alternatives(spec: ModuleSpec, hparams: dict) -> Callable[[], str]:
        # every row of this module with these hyper-parameters, at every scale the YAML defines: insert() writes
        # the same hyper-parameters into each row, so the value named must fit all of them
        def find() -> str:
            same = [x for x in rows if specs[x.index][0] is spec and specs[x.index][1] == hparams]
            counts = set()
            for scale in scale_names(cfg) or [None]:
                info = layer_channels(cfg, scale, ch_in)
                counts.update(info[x.index].c_in for x in same if isinstance(info[x.index].c_in, int))
            return hint(spec, counts, hparams)

        return find

    for scale in list(scales) if scales is not None else (scale_names(cfg) or [None]):
        info = layer_channels(cfg, scale, ch_in)
        for x in rows:
            spec, hparams = specs[x.index]
            source = x.inputs[0]
            at = f"layer {x.index} ({x.module}" + (f", scale {scale}" if scale else "") + ")"
            if source >= 0 and info[source].kind != FEATURE:
                raise ShapeError(
                    f"{at}: layer {source} ({info[source].module}) does not output one feature map "
                    f"(channels {info[source].c_out!r}); an attention cannot follow it"
                )
            probe(spec, info[x.index].c_in, hparams, at, alternatives(spec, hparams))
