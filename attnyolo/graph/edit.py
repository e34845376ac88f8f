"""Pure edits of a model YAML dict: insert, replace and remove rows, renumbering every reference.

An edit never touches a row's ``n``, module or ``args``; it only moves rows and rewrites ``from``. To do that
it first turns each reference into a *logical* one (the layer it points to, and whether it was written
relative, ``-k``, or absolute, ``j``), edits the list of layers, and writes every reference back in the
style it had. So ``-1`` stays ``-1`` when the previous row is still the layer it reads, ``[-1, 6]`` becomes
``[-1, 7]`` when a row lands before layer 6, a ``-2`` becomes ``-3`` when a row lands in between, and the
head's ``[15, 18, 21]`` follows its inputs.

Meaning of an insertion (the convention of hand-made community YAMLs):

- :func:`insert_rows` ``after={k: rows}``: the new rows follow layer ``k`` as a chain (the first reads ``k``,
  each next one reads the one before), and every later reference to ``k`` now reads the chain's output.
- ``before_head={h: rows}``: a chain reading head input ``h`` is placed just before the head, and only the
  head reads it; the neck keeps its own paths.

:func:`remove_rows` undoes either: every reference to a removed row goes back to what that row read, in
the reference's original style, so removing the inserted rows gives back the input exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from attnyolo.graph.errors import PlacementError
from attnyolo.graph.layers import INPUT, SECTIONS, check_model, layers

Row = Sequence[Any]  # [from, repeats, module, args]; only repeats, module and args of a new row are used


@dataclass(frozen=True)
class IndexMap:
    """Where each layer of an edit's input went: ``old -> new``, strictly increasing.

    ``old_to_new[i]`` is the new index of old layer ``i``; the new indices that no old layer maps to are the
    inserted rows (:attr:`inserted`). ``map[i]`` and ``map(i)`` both read it.
    """

    old_to_new: tuple[int, ...]
    size: int  # number of layers after the edit

    def __post_init__(self) -> None:
        m = tuple(int(x) for x in self.old_to_new)
        object.__setattr__(self, "old_to_new", m)
        if any(b <= a for a, b in zip(m, m[1:], strict=False)) or (m and (m[0] < 0 or m[-1] >= self.size)):
            raise ValueError(f"an IndexMap is strictly increasing within [0, {self.size}), got {list(m)}")

    @classmethod
    def identity(cls, n: int) -> IndexMap:
        return cls(tuple(range(n)), n)

    @classmethod
    def from_list(cls, old_to_new: Iterable[int], size: int | None = None) -> IndexMap:
        m = tuple(old_to_new)
        return cls(m, size if size is not None else (m[-1] + 1 if m else 0))

    def __getitem__(self, old: int) -> int:
        return self.old_to_new[old]

    def __call__(self, old: int) -> int:
        return self.old_to_new[old]

    def __len__(self) -> int:
        return len(self.old_to_new)

    def __iter__(self) -> Iterator[int]:
        return iter(self.old_to_new)

    @property
    def inserted(self) -> tuple[int, ...]:
        """New indices that no old layer maps to."""
        image = set(self.old_to_new)
        return tuple(i for i in range(self.size) if i not in image)

    def inverse(self) -> dict[int, int]:
        """``new -> old`` for the new indices that come from an old layer."""
        return {n: o for o, n in enumerate(self.old_to_new)}

    def then(self, other: IndexMap) -> IndexMap:
        """This map followed by ``other`` (``other`` maps this map's output)."""
        if len(other) != self.size:
            raise ValueError(f"cannot compose: this map has {self.size} outputs, the next one {len(other)} inputs")
        return IndexMap(tuple(other[i] for i in self.old_to_new), other.size)

    def to_list(self) -> list[int]:
        return list(self.old_to_new)


@dataclass(frozen=True)
class _Ref:
    target: Hashable  # node key, or INPUT
    style: str  # "relative" (-k), "absolute" (j) or "auto" (-1 if the previous row, else j)


@dataclass
class _Node:
    key: Hashable
    section: str
    refs: list[_Ref]
    is_list: bool
    row: list  # [from, n, m, args]; from is rewritten on output
    extra: dict = field(default_factory=dict)


def _decompose(cfg: Mapping) -> list[_Node]:
    nodes = []
    for layer in layers(cfg):
        raw = layer.from_ if isinstance(layer.from_, list) else [layer.from_]
        refs = [_Ref(j, "relative" if f < 0 else "absolute") for f, j in zip(raw, layer.inputs, strict=True)]
        row = [layer.from_, layer.repeats, layer.module, layer.args]
        nodes.append(_Node(layer.index, layer.section, refs, isinstance(layer.from_, list), row))
    return nodes


def _compose(cfg: Mapping, nodes: list[_Node]) -> tuple[dict, dict[Hashable, int]]:
    position = {node.key: p for p, node in enumerate(nodes)}
    sections: dict[str, list] = {s: [] for s in SECTIONS}
    for p, node in enumerate(nodes):
        refs = []
        for ref in node.refs:
            if ref.target == INPUT:
                if p != 0:
                    raise PlacementError(f"layer {p} would read the input image, which only layer 0 can")
                refs.append(-1)
                continue
            j = position[ref.target]
            relative = ref.style == "relative" or (ref.style == "auto" and j == p - 1)
            refs.append(j - p if relative else j)
        f = refs if node.is_list else refs[0]
        sections[node.section].append([f, *copy.deepcopy(node.row[1:])])
    out = {}
    for key, value in cfg.items():
        out[key] = sections[key] if key in SECTIONS else copy.deepcopy(value)
    check_model(out, "edited model")  # an edit that breaks the graph is a bug here, never the user's
    return out, position


def _sections_ordered(nodes: list[_Node]) -> None:
    seen_head = False
    for node in nodes:
        seen_head |= node.section == "head"
        if seen_head and node.section != "head":
            raise AssertionError("backbone rows after head rows")


def _new_node(key: Hashable, section: str, source: Hashable, row: Row, style: str) -> _Node:
    _, n, m, args = row
    return _Node(key, section, [_Ref(source, style)], False, [None, n, m, copy.deepcopy(args)])


def insert_rows(
    cfg: Mapping,
    after: Mapping[int, Sequence[Row]] | None = None,
    before_head: Mapping[int, Sequence[Row]] | None = None,
) -> tuple[dict, IndexMap]:
    """Insert row chains after layers and/or before the head; return the new dict and the old -> new map.

    Args:
        cfg: a model dict (not modified).
        after: ``{k: [row, ...]}``: a chain after layer ``k``; later references to ``k`` read its output.
        before_head: ``{h: [row, ...]}``: a chain reading head input ``h``, placed before the head, read only by
            the head (``h`` must be one of the head's inputs).
        Indices are the input's; a row's ``from`` is ignored (the engine sets it).
    """
    check_model(cfg)
    nodes = _decompose(cfg)
    last = len(nodes) - 1
    after, before_head = dict(after or {}), dict(before_head or {})
    for k in after:
        if not 0 <= k < last:
            raise PlacementError(
                f"cannot insert after layer {k}: layers 0..{last - 1} can be followed ({last} is the head)"
            )
    head_inputs = [r.target for r in nodes[last].refs]
    for h in before_head:
        if h not in head_inputs:
            raise PlacementError(f"layer {h} is not an input of the head (it reads {head_inputs})")

    # after-chains: redirect every reference to k (except the chain's own first row) to the chain's last row
    out: list[_Node] = []
    redirect: dict[Hashable, Hashable] = {}
    for node in nodes:
        node = replace(node, refs=[_Ref(redirect.get(r.target, r.target), r.style) for r in node.refs])
        out.append(node)
        source = node.key
        for j, row in enumerate(after.get(node.key, ())):
            key = ("after", node.key, j)
            out.append(_new_node(key, node.section, source, row, "relative"))
            source = key
        redirect[node.key] = source

    # before-head chains read the head's (possibly redirected) input and feed only the head
    head = out.pop()
    head_redirect: dict[Hashable, Hashable] = {}
    for h in dict.fromkeys(head_inputs):
        if h not in before_head:
            continue
        source = redirect.get(h, h)
        for j, row in enumerate(before_head[h]):
            key = ("before_head", h, j)
            out.append(_new_node(key, head.section, source, row, "auto" if j == 0 else "relative"))
            source = key
        head_redirect[redirect.get(h, h)] = source
    out.append(replace(head, refs=[_Ref(head_redirect.get(r.target, r.target), r.style) for r in head.refs]))

    _sections_ordered(out)
    new, position = _compose(cfg, out)
    return new, IndexMap(tuple(position[i] for i in range(len(nodes))), len(out))


def remove_rows(cfg: Mapping, indices: Iterable[int]) -> tuple[dict, dict[int, int]]:
    """Remove single-input rows; every reference to one reads what it read. Returns the dict and old -> new
    for the layers kept."""
    check_model(cfg)
    nodes = _decompose(cfg)
    drop = set()
    for i in indices:
        if not 0 <= i < len(nodes) - 1:
            raise PlacementError(f"cannot remove layer {i}: layers 0..{len(nodes) - 2} exist before the head")
        if nodes[i].is_list or len(nodes[i].refs) != 1:
            raise PlacementError(f"cannot remove layer {i} ({nodes[i].row[2]}): it reads several layers")
        drop.add(i)
    source: dict[Hashable, Hashable] = {}
    kept = []
    for node in nodes:  # references point backwards, so a removed row's own source is already resolved
        node = replace(node, refs=[_Ref(source.get(r.target, r.target), r.style) for r in node.refs])
        if node.key in drop:
            source[node.key] = node.refs[0].target
        else:
            kept.append(node)
    new, position = _compose(cfg, kept)
    return new, {k: position[k] for k in range(len(nodes)) if k in position}


def replace_rows(cfg: Mapping, rows: Mapping[int, Row]) -> dict:
    """Replace the ``n``, module and args of rows (numbering and ``from`` unchanged)."""
    check_model(cfg)
    out = copy.deepcopy(dict(cfg))
    nb = len(out["backbone"])
    for i, row in rows.items():
        section, j = ("backbone", i) if i < nb else ("head", i - nb)
        old = out[section][j]
        out[section][j] = [old[0], row[1], row[2], copy.deepcopy(row[3])]
    return out
