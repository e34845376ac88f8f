"""Which layer of one model YAML is which layer of another: the map a weight transfer follows.

Two models share a *base* when, with their attnyolo attention rows taken out, their rows are the same (module,
repeats, args) and read the same layers. Then each base layer of the source maps to its twin in the target, and
each attention row maps to the target's attention row in the same *slot* (after the same base layer and before
the same next base layer, so "after layer 15" and "before the head, reading 15" are different slots) with the
same module, repeats and args, matched in chain order. An attention row with no twin has no place in the target:
cbam in the neck meets se in the neck, or cbam in the backbone, or a target without attention.

So every pairing is covered by one rule: base -> edited (the insertion's index map), edited -> the same edited
(the identity), edited -> another edited (shared layers and twin attention rows), edited -> base.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attnyolo.errors import AttnYoloError
from attnyolo.graph.inside_syntax import plain
from attnyolo.graph.layers import INPUT, Layer, check_model, layers


@dataclass(frozen=True)
class Alignment:
    """Source layer -> target layer for every source layer that has a place in the target.

    Attributes:
        mapping: ``{source index: target index}``.
        unplaced: source attention rows that have no twin in the target.
        source_size: number of source layers.
        target_size: number of target layers.
    """

    mapping: dict[int, int]
    unplaced: tuple[int, ...]
    source_size: int
    target_size: int

    @property
    def total(self) -> bool:
        """True when every source layer has a place (base -> edited, or the same model)."""
        return not self.unplaced


@dataclass(frozen=True)
class _View:
    rows: list[Layer]
    base: list[int]  # indices of the non-attention rows, in order
    signature: list[tuple]  # per base row: module, repeats, args, inputs in base numbering
    slots: dict[tuple[int, int], list[int]]  # (anchor base number, next base number) -> attention rows in order


def _view(cfg: Mapping) -> _View:
    # attention inside a block keeps the block, its index and its tensors: compare rows without that option
    rows = [plain(x) for x in layers(cfg)]
    attention = {x.index for x in rows if x.attention is not None}

    def through(k: int) -> int:  # the base layer a reference reaches once attention rows are skipped
        while k != INPUT and k in attention:
            k = rows[k].inputs[0]
        return k

    base = [x.index for x in rows if x.index not in attention]
    number = {k: i for i, k in enumerate(base)}
    number[INPUT] = INPUT

    signature = [
        (rows[k].module, rows[k].repeats, rows[k].args, tuple(number[through(j)] for j in rows[k].inputs)) for k in base
    ]
    slots: dict[tuple[int, int], list[int]] = {}
    for x in rows:
        if x.index in attention:
            following = next((i for i, k in enumerate(base) if k > x.index), len(base))
            slots.setdefault((number[through(x.inputs[0])], following), []).append(x.index)
    return _View(rows, base, signature, slots)


def _twin(a: Layer, b: Layer) -> bool:
    return (a.module, a.repeats, a.args) == (b.module, b.repeats, b.args)


def align_layers(source_cfg: Any, target_cfg: Any) -> Alignment | None:
    """Align two model YAMLs that share a base (see the module docstring); ``None`` when they do not.

    Args:
        source_cfg: the YAML dict of the model the weights come from.
        target_cfg: the YAML dict of the model they go to.

    Returns:
        The :class:`Alignment`, or ``None`` when the bases differ (another architecture, not a model YAML).
    """
    try:
        check_model(source_cfg)
        check_model(target_cfg)
    except AttnYoloError:
        return None
    src, dst = _view(source_cfg), _view(target_cfg)
    if src.signature != dst.signature:
        return None
    mapping = dict(zip(src.base, dst.base, strict=True))
    unplaced: list[int] = []
    for slot, chain in src.slots.items():
        candidates, j = dst.slots.get(slot, []), 0
        for k in chain:  # in-order matching: a chain keeps its order when rows are added around it
            start = j
            while j < len(candidates) and not _twin(src.rows[k], dst.rows[candidates[j]]):
                j += 1
            if j < len(candidates):
                mapping[k] = candidates[j]
                j += 1
            else:
                unplaced.append(k)
                j = start
    return Alignment(dict(sorted(mapping.items())), tuple(sorted(unplaced)), len(src.rows), len(dst.rows))
