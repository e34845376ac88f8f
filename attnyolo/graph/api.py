"""The engine's public functions: :func:`insert`, :func:`replace`, :func:`remove`, :func:`index_map`.

Each takes a model (path, bare Ultralytics name or dict), returns a new dict, and checks the result: every
attention row must build at every scale of the YAML (:mod:`attnyolo.graph.checks`).

The edited dict records its edits under the top-level key ``attnyolo`` (Ultralytics ignores unknown keys, and
the key stays in ``model.yaml`` inside saved checkpoints)::

    attnyolo:
      base: yolov8n.yaml         # what the first edit started from
      inserted: [16, 20, 24]     # indices of the attention rows
      index_map: [0, 1, ..., 15, 17, 18, 19, 21, 22, 23, 25]   # base layer i is now layer index_map[i]

``index_map`` maps the model without its attention rows to this one, so weight transfer from a checkpoint of
``base`` never needs the caller to carry the map (:func:`attnyolo.transfer` reads it from ``model.yaml``).
Removing every attention row removes the key too, so ``remove(insert(y)[0]) == y``.

``inside=True`` puts the attention inside the residual bottlenecks of the chosen blocks instead of after them
(:mod:`attnyolo.graph.inside`): the block row gets a trailing ``{inside: cbam}`` option, no row is added, and
``remove``/``replace`` take those rows too (by index or zoo name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attnyolo.graph import edit, placement
from attnyolo.graph import inside as inside_edits
from attnyolo.graph.channels import resolve_scale
from attnyolo.graph.checks import check_attention_rows
from attnyolo.graph.edit import IndexMap
from attnyolo.graph.errors import PlacementError
from attnyolo.graph.inside_syntax import inside_name, inside_rows
from attnyolo.graph.layers import METADATA_KEY, attention_name, layers, row_module
from attnyolo.graph.yaml_io import Base, load, source_name
from attnyolo.registry import describe

AttentionItem = str | Sequence[Any]


def _items(
    attention: AttentionItem | Sequence[AttentionItem], where: Any, after: str | None, hparams: dict
) -> list[tuple[str, Any, str | None, dict]]:
    """Normalise ``attention`` to ``(name, where, after, hparams)`` items (see :func:`insert`)."""
    if isinstance(attention, str):
        return [(attention, where, after, dict(hparams))]
    if not isinstance(attention, (list, tuple)) or not attention:
        raise PlacementError(f"attention must be a name or a non-empty list, got {attention!r}")
    out = []
    for item in attention:
        if isinstance(item, str):
            out.append((item, where, after, dict(hparams)))
        elif isinstance(item, (list, tuple)) and 2 <= len(item) <= 3 and isinstance(item[0], str):
            own = dict(item[2]) if len(item) == 3 else {}
            out.append((item[0], item[1], after, {**hparams, **own}))
        else:
            raise PlacementError(f"an attention item is a name, (name, where) or (name, where, hparams), got {item!r}")
    return out


def _attention_rows(cfg: Mapping) -> list[int]:
    return [x.index for x in layers(cfg) if attention_name(x.module) is not None]


def _record(cfg: dict, base: str | None) -> dict:
    """(Re)write the ``attnyolo`` record of ``cfg`` from its rows; drop it when no attention row is left."""
    old = cfg.pop(METADATA_KEY, None)
    if isinstance(old, Mapping) and old.get("base") is not None:
        base = old["base"]
    inserted = _attention_rows(cfg)
    if inserted:
        kept = [x.index for x in layers(cfg) if x.index not in set(inserted)]
        cfg[METADATA_KEY] = {**({"base": base} if base is not None else {}), "inserted": inserted, "index_map": kept}
    return cfg


def index_map(cfg: Base) -> IndexMap:
    """Map from ``cfg`` without its attention rows to ``cfg`` (what its ``attnyolo.index_map`` records)."""
    d = load(cfg)
    inserted = set(_attention_rows(d))
    n = len(layers(d))
    return IndexMap(tuple(i for i in range(n) if i not in inserted), n)


def insert(
    base: Base,
    attention: AttentionItem | Sequence[AttentionItem],
    where: placement.Where = None,
    *,
    after: str | None = None,
    scale: str | None = None,
    check: bool = True,
    identity_start: bool = True,
    inside: bool = False,
    **hparams: Any,
) -> tuple[dict, IndexMap]:
    """Insert zoo attention(s) into a model YAML; return the edited dict and the ``old -> new`` index map.

    Args:
        base: a path, a bare Ultralytics name (``"yolov8n.yaml"``, ``"yolo11s-seg.yaml"``, ``"yolov5nu.yaml"``,
            found offline in the installed Ultralytics) or a model dict (not modified).
        attention: a zoo name (``"cbam"``); or a list whose items are names (each at ``where``, chained in list
            order at the same layer) or ``(name, where)`` / ``(name, where, {hparams})`` pairs with their own
            placement. Every placement is resolved against ``base``'s numbering.
        where: ``"neck"`` (default), ``"backbone"``, ``"before_head"``, or base layer indices (``[12, 15]``);
            see :mod:`attnyolo.graph.placement`.
        after: a module type (``"C2f"``, ``"C3k2"``): after every layer of that type (within ``where`` if given).
        scale: the scale to record for building (``"s"``); the edit itself holds at every scale.
        check: build each inserted module at every scale of the YAML and check it keeps the shape.
        identity_start: each inserted layer starts as the exact identity, ``x + gamma * (attn(x) - x)`` with a
            learnable ``gamma = 0`` (see :mod:`attnyolo.graph.ultralytics`). It is the adapter's default, so the
            rows stay ``[-1, 1, ay_cbam, []]``; ``False`` writes ``[{hparams}, {identity_start: false}]`` (plain
            ``attn(x)``, e.g. to reproduce a community YAML trained from scratch).
        inside: put the attention inside the residual bottlenecks of the chosen layers (C2f, C3, C3k2... see
            :mod:`attnyolo.graph.inside`) instead of after them; ``where``/``after`` still choose the layers (a
            named region keeps its blocks with bottlenecks and skips the rest; explicit indices must all be such
            blocks). Per item: ``("cbam", "neck", {"inside": True})``.
        **hparams: the zoo module's hyper-parameters, written into the rows (``rd_ratio=1/16``).

    Returns:
        ``(cfg, index_map)``: ``index_map[i]`` is the new index of ``base``'s layer ``i``.
    """
    for flag, value in (("identity_start", identity_start), ("inside", inside)):
        if not isinstance(value, bool):
            raise PlacementError(f"{flag} must be True or False, got {value!r}")
    cfg = load(base, scale=scale)
    if scale is not None:
        resolve_scale(cfg, scale)  # an unknown scale fails here, not at build time
    after_plan: dict[int, list] = {}
    before_plan: dict[int, list] = {}
    for name, item_where, item_after, item_hparams in _items(attention, where, after, hparams):
        item_inside = item_hparams.pop("inside", inside)
        if not isinstance(item_inside, bool):
            raise PlacementError(f"'inside' must be True or False, got {item_inside!r}")
        spec = describe(name)
        if item_inside:
            inside_edits.refuse_temporal(spec, "inside blocks")
        spec.check_hparams(item_hparams)
        chosen = placement.resolve(cfg, item_where, item_after)
        if item_inside:
            cfg = _put_inside(cfg, chosen, item_where, spec.name, item_hparams, identity_start)
            continue
        args = [item_hparams] if item_hparams else []
        if not identity_start:  # the adapter's default is on: only "off" is written into the row
            args = [item_hparams, {"identity_start": False}]
        row = [-1, 1, row_module(spec.name), args]
        plan = before_plan if chosen.mode == placement.BEFORE_HEAD else after_plan
        for k in chosen.indices:
            plan.setdefault(k, []).append(row)
    new, imap = edit.insert_rows(cfg, after_plan, before_plan)
    _record(new, source_name(base))
    if check:
        check_attention_rows(new)
    return new, imap


def _put_inside(
    cfg: dict, chosen: placement.Placement, where: placement.Where, name: str, hparams: dict, identity_start: bool
) -> dict:
    """``cfg`` with ``name`` inside the bottlenecks of the placement's blocks (see :func:`insert`)."""
    if chosen.mode == placement.BEFORE_HEAD:
        raise PlacementError("inside=True puts attention inside blocks; use where='neck' for the head's inputs")
    named = where is None or (isinstance(where, str) and where.lower().replace("-", "_") in placement.NAMED)
    blocks = inside_edits.blocks_in(cfg, chosen.indices, named)
    return inside_edits.add(cfg, blocks, name, hparams, identity_start)


def _select(cfg: Mapping, which: int | str | Iterable[int] | None) -> tuple[list[int], list[int]]:
    """``(attention rows, rows with attention inside)`` of ``cfg`` that ``which`` names (all by default)."""
    rows, inner = _attention_rows(cfg), inside_rows(cfg)
    if which is None:
        return rows, inner
    if isinstance(which, str):
        name = attention_name(which) or which.lower()
        chosen = [i for i in rows if attention_name(layers(cfg)[i].module) == name]
        chosen_inner = [i for i in inner if inside_name(cfg, i) == name]
        if not chosen and not chosen_inner:
            present = sorted({attention_name(layers(cfg)[i].module) for i in rows})
            present_inner = sorted({f"{inside_name(cfg, i)} (inside)" for i in inner})
            have = ", ".join(present + present_inner) or "none"
            raise PlacementError(f"no {name!r} attention in this YAML (it has {have})")
        return chosen, chosen_inner
    indices = [which] if isinstance(which, int) else list(which)
    all_layers = layers(cfg)
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(all_layers):
            raise PlacementError(f"layer index {i!r} is out of range: this YAML has layers 0..{len(all_layers) - 1}")
        if i not in rows and i not in inner:
            raise PlacementError(
                f"layer {i} ({all_layers[i].module}) is not an attnyolo attention row nor a block with attention "
                f"inside; those are {rows or 'none'} and {inner or 'none'}"
            )
    chosen = sorted(set(indices))
    return [i for i in chosen if i in rows], [i for i in chosen if i in inner]


def remove(cfg: Base, indices: int | str | Iterable[int] | None = None) -> dict:
    """Remove attention rows and attention inside blocks (all by default; or indices, or every one of a zoo name)
    and renumber.

    ``remove(insert(y)[0]) == y`` for any model dict ``y`` without attention, ``inside=True`` or not.
    """
    d = load(cfg)
    chosen, chosen_inner = _select(d, indices)
    d = inside_edits.remove(d, chosen_inner)  # same numbering: options first, then the rows
    new, _ = edit.remove_rows(d, chosen)
    return _record(new, source_name(cfg))


def replace(cfg: Base, old: int | str, new_attention: str, *, check: bool = True, **hparams: Any) -> dict:
    """Swap attention rows (and attention inside blocks) for another zoo module in place (numbering unchanged).

    Args:
        cfg: an edited model (path or dict).
        old: the index of an attention row or of a block with attention inside, or a zoo name (every one of that
            attention).
        new_attention: the zoo name to put there; ``**hparams`` are its hyper-parameters.
    """
    d = load(cfg)
    chosen, chosen_inner = _select(d, old)
    spec = describe(new_attention)
    spec.check_hparams(hparams)
    d = inside_edits.swap(d, chosen_inner, spec.name, hparams)
    all_layers = layers(d)
    rows = {}
    for i in chosen:
        options = all_layers[i].args[1:2] if len(all_layers[i].args) > 1 else []
        args = [hparams, *options] if hparams or options else []
        rows[i] = [None, all_layers[i].repeats, row_module(spec.name), args]
    out = _record(edit.replace_rows(d, rows), source_name(cfg))
    if check:
        check_attention_rows(out)
    return out
