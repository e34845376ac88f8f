"""Constraint hints: when a zoo module refuses a layer's channel count, find a hyper-parameter value that fits.

A module such as Shuffle Attention keeps its paper default (``groups=64``, so channels divisible by 128), which
YOLOv8n's 64-channel neck cannot take. Instead of only saying so, the engine searches the hyper-parameters the
channel constraint involves for the value nearest below the default (else above it) that every attention row of
that kind accepts at every scale of the YAML, and names it (``pass groups=32``).

Which hyper-parameters to search is data: a spec's ``channel_params`` when it lists them, otherwise the
integer hyper-parameters that the clauses of its ``constraints`` text about channels name
(``"channels divisible by num_heads; memory: ..."`` -> ``num_heads``). The search only constructs modules (each
constructor checks its constraints), on the meta device where it can, and never runs them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from attnyolo.registry import ModuleSpec

MAX_CANDIDATE = 1024  # largest value tried for an integer hyper-parameter


def constrained_params(spec: ModuleSpec) -> list[str]:
    """Integer hyper-parameters of ``spec`` that its channel constraint involves (searched for a working value)."""
    defaults = spec.defaults
    if spec.channel_params:
        return [p for p in spec.channel_params if p in defaults]
    # only the clauses about channels: "channels divisible by num_heads; memory: ... memory_limit_mb" -> num_heads
    text = " ".join(clause for clause in spec.constraints.split(";") if re.search(r"\bchannels\b", clause))
    return [
        name
        for name, value in defaults.items()
        if isinstance(value, int) and not isinstance(value, bool) and re.search(rf"\b{re.escape(name)}\b", text)
    ]


def _candidates(current: int, largest: int) -> list[int]:
    """The values below ``current``, nearest first, then those above it up to ``max(2*current, largest)`` (at most
    :data:`MAX_CANDIDATE`): a constraint on channels is usually met by fewer groups or heads, and more of
    them than channels never fit."""
    top = min(MAX_CANDIDATE, max(2 * current, largest))
    return [*range(current - 1, 0, -1), *range(current + 1, top + 1)]


def _builds(spec: ModuleSpec, channels: int, hparams: Mapping[str, Any]) -> bool:
    """Whether ``spec``'s constructor accepts ``channels`` and ``hparams``.

    Built on the meta device first (no memory, no initialisation: a wide transformer block costs nothing);
    a constructor that cannot run there for other reasons than its checks is built for real.
    """
    try:
        with torch.device("meta"):
            spec.create(channels, **hparams)
        return True
    except (ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - an operation without a meta kernel, not a refusal: try on the CPU
        pass
    try:
        spec.create(channels, **hparams)
    except (ValueError, TypeError):
        return False
    return True


def _accepts(spec: ModuleSpec, channels: Iterable[int], hparams: Mapping[str, Any]) -> bool:
    return all(_builds(spec, c, hparams) for c in channels)


def working_values(spec: ModuleSpec, channels: Iterable[int], hparams: Mapping[str, Any]) -> dict[str, int]:
    """For each constrained hyper-parameter, the value nearest the current one (below first) with which ``spec`` accepts
    every channel count in ``channels`` (the other hyper-parameters as in ``hparams``); absent when none does."""
    counts = sorted(set(channels))
    found = {}
    for name in constrained_params(spec):
        current = hparams.get(name, spec.defaults[name])
        if not isinstance(current, int) or isinstance(current, bool) or current < 1:
            current = 1
        for value in _candidates(current, counts[-1] if counts else 1):
            if _accepts(spec, counts, {**hparams, name: value}):
                found[name] = value
                break
    return found


def hint(spec: ModuleSpec, channels: Iterable[int], hparams: Mapping[str, Any]) -> str:
    """``"; pass groups=32 (accepted at every scale of this YAML: channels 64, 128, ...)"``, or ``""``."""
    counts = sorted(set(channels))
    values = working_values(spec, counts, hparams)
    if not values:
        return ""
    options = " or ".join(f"{name}={value}" for name, value in values.items())
    listed = ", ".join(map(str, counts))
    return f"; pass {options} (accepted by every {spec.name!r} row at every scale of this YAML: channels {listed})"
