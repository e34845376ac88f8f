"""Weight transfer that follows layers, not key names, through an insertion's index map.

Ultralytics moves pretrained weights by matching state-dict keys (``intersect_dicts`` in
``ultralytics/utils/torch_utils.py``, used by ``DetectionModel.load``). An insertion renumbers every layer behind
the insert point, so ``model.13.cv1.conv.weight`` of the base model meets a different layer (or nothing) in the
edited one and is silently dropped. :func:`transfer` renames ``model.<old>.<rest>`` to
``model.<index_map[old]>.<rest>`` first, then copies every tensor whose shape matches, and reports what moved,
what stayed behind and why, and what the edited model initialises itself (inserted modules).

The index map is found without the caller's help: when the source carries its architecture (a checkpoint's or a
model's ``yaml``, the ``model_yaml`` of an attnyolo ``.safetensors``), the source's layers are aligned with the
model's (:func:`attnyolo.graph.align.align_layers`: same architecture -> the identity; base -> edited, edited ->
another edited, edited -> base -> shared layers and twin attention rows); a bare state dict takes the model's own
attention record (the ``attnyolo`` record in ``model.yaml``: base -> model) or its keys as they are, whichever
places more tensors.

Nothing is lost silently: a source tensor whose layer has a place in the model but that cannot be copied (a key
the model lacks, another shape) stops the transfer unless ``allow_partial=True``. Two kinds of left-behind
tensors are reported and allowed: those of source layers with no place in the model (an attention row the model
does not have) and the head's class convolutions when the class count changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnyolo.checkpoints import architecture, load_checkpoint
from attnyolo.errors import AttnYoloError
from attnyolo.graph.align import align_layers
from attnyolo.graph.edit import IndexMap
from attnyolo.graph.layers import METADATA_KEY, attention_name, layers
from attnyolo.models import checkpoint_model, unwrap

_LAYER_KEY = re.compile(r"^model\.(\d+)\.(.+)$")


class TransferError(AttnYoloError):
    """A transfer that cannot run (bad source or index map) or would leave behind tensors that have a place in the
    model (unless ``allow_partial``; with ``strict``, also a class-count change)."""


@dataclass
class TransferReport:
    """What :func:`transfer` did, tensor by tensor.

    Attributes:
        source: where the weights came from (a path or a type name).
        transferred: ``(source key, target key)`` pairs copied into the model.
        skipped: ``(source key, reason)`` for source tensors that were not copied.
        newly_initialised: target keys that received nothing and keep their own initialisation (inserted modules, a head
            resized for another class count).
        source_total: tensors in the source state dict.
        target_total: tensors in the model's state dict.
        key_matching_kept: how many source tensors Ultralytics' key matching (``intersect_dicts``) would keep
            without the remap: the number this module exists to beat.
        index_map: the old -> new layer map used (``None``: identity).
        index_map_source: where the map came from: ``"given"``, ``"aligned"`` (source and model layers),
            ``"model record"`` (the model's attention rows) or ``"none"`` (keys kept as they are).
    """

    source: str
    transferred: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    newly_initialised: list[str] = field(default_factory=list)
    source_total: int = 0
    target_total: int = 0
    key_matching_kept: int = 0
    index_map: dict[int, int] | None = None
    index_map_source: str = "given"

    @property
    def counts(self) -> dict[str, int]:
        """Totals: transferred, skipped, new, source, target, key_matching."""
        return {
            "transferred": len(self.transferred),
            "skipped": len(self.skipped),
            "new": len(self.newly_initialised),
            "source": self.source_total,
            "target": self.target_total,
            "key_matching": self.key_matching_kept,
        }

    def summary(self) -> str:
        """One line for logs: how many tensors moved, compared with plain key matching."""
        c = self.counts
        return (
            f"transferred {c['transferred']}/{c['source']} source tensors into {c['target']} "
            f"({c['skipped']} skipped, {c['new']} newly initialised); Ultralytics' key matching would keep "
            f"{c['key_matching']}"
        )

    def __str__(self) -> str:
        return self.summary()

    def as_table(self, *, per_tensor: bool = False):
        """A rich Table of the transfer, one row per source layer (or per tensor with ``per_tensor=True``).

        Layer rows give the source and target layer, how many tensors were transferred / skipped / newly
        initialised there, and the distinct skip reasons; the caption holds the totals.
        """
        from rich.table import Table

        caption = f"{self.summary()}; index map: {self.index_map_source}"
        table = Table(title=f"Weight transfer from {self.source}", caption=caption)
        if per_tensor:
            for col in ("status", "source key", "target key", "reason"):
                table.add_column(col)
            for src, dst in self.transferred:
                table.add_row("transferred", src, dst, "")
            for src, reason in self.skipped:
                table.add_row("[yellow]skipped", src, "", reason)
            for dst in self.newly_initialised:
                table.add_row("[cyan]new", "", dst, "received nothing")
            return table
        for col, justify in (("layer", "right"), ("→ layer", "right"), ("transferred", "right"), ("skipped", "right")):
            table.add_column(col, justify=justify)
        table.add_column("new", justify="right")
        table.add_column("notes")
        rows: dict[tuple[str, str], list[Any]] = {}

        def row(src_layer: str, dst_layer: str) -> list[Any]:
            return rows.setdefault((src_layer, dst_layer), [0, 0, 0, []])

        for src, dst in self.transferred:
            row(_layer_of(src), _layer_of(dst))[0] += 1
        for src, reason in self.skipped:
            r = row(_layer_of(src), self._target_layer(src))
            r[1] += 1
            if reason not in r[3]:
                r[3].append(reason)
        source_of = {dst_layer: src_layer for src_layer, dst_layer in rows if dst_layer}
        for dst in self.newly_initialised:  # counted on the row of the layer that also received weights, if any
            dst_layer = _layer_of(dst)
            row(source_of.get(dst_layer, ""), dst_layer)[2] += 1
        for (src_layer, dst_layer), (t, s, n, notes) in sorted(rows.items(), key=_row_order):
            table.add_row(
                src_layer or "-",
                dst_layer or "-",
                str(t) if t else "",
                f"[yellow]{s}" if s else "",
                f"[cyan]{n}" if n else "",
                "; ".join(notes),
            )
        return table

    def _target_layer(self, src_key: str) -> str:
        layer = _layer_of(src_key)
        if not layer.isdigit():
            return layer
        if self.index_map is None:
            return layer
        return str(self.index_map[int(layer)]) if int(layer) in self.index_map else ""


def _layer_of(key: str) -> str:
    m = _LAYER_KEY.match(key)
    return m.group(1) if m else key.split(".")[0]


def _row_order(item: tuple[tuple[str, str], Any]) -> tuple[int, int, str]:
    src, dst = item[0]
    layer = dst or src
    return (0, int(layer), src) if layer.isdigit() else (1, 0, layer)


@dataclass
class TransferSource:
    """A transfer's source, loaded once: its state dict, a name for messages, its architecture and class names.

    Attributes:
        state: the tensors (``model.<i>.<rest>`` keys).
        name: a path or a type name.
        cfg: the source's model YAML dict when it carries one (a checkpoint's model, an attnyolo ``.safetensors``'s
            metadata, a model object), else ``None``.
        names: the class names when the source carries them, else ``None``.
    """

    state: dict[str, torch.Tensor]
    name: str
    cfg: Any = None
    names: dict | None = None


def load_source(source: Any, *, trust: bool = False) -> TransferSource:
    """Load a transfer source once (see :func:`transfer` for the accepted forms), keeping its architecture.

    A path keeps the architecture an attnyolo ``.safetensors`` stores in its metadata, which a state dict read
    from the same file no longer has: pass the path (or this object), not the loaded dict.
    """
    if isinstance(source, TransferSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        ckpt = load_checkpoint(Path(source), trust=trust)
        arch = architecture(ckpt, path=source)
        return TransferSource(_state_dict_of_checkpoint(ckpt, str(source)), str(source), arch.cfg, arch.names)
    if isinstance(source, Mapping):
        arch = architecture(source)
        state = _state_dict_of_checkpoint(source, "the source dict")
        return TransferSource(state, "a state dict", arch.cfg, arch.names)
    try:
        net = unwrap(source)
    except TypeError as e:
        raise TransferError(
            f"cannot transfer from a {type(source).__name__}: expected a checkpoint path (.pt, .safetensors), a "
            "state dict or a model"
        ) from e
    return TransferSource(
        dict(net.state_dict()), type(net).__name__, getattr(net, "yaml", None), _as_names(getattr(net, "names", None))
    )


def _as_names(names: Any) -> dict | None:
    return dict(names) if isinstance(names, Mapping) and names else None


def _state_dict_of_checkpoint(ckpt: Mapping[str, Any], name: str) -> dict[str, torch.Tensor]:
    net = checkpoint_model(ckpt)  # the EMA weights when a checkpoint has both, as Ultralytics
    if net is not None:
        return dict(net.state_dict())
    for key in ("model", "state_dict"):
        value = ckpt.get(key)
        if isinstance(value, Mapping) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            return _strip_wrapper(dict(value))
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return _strip_wrapper(dict(ckpt))
    raise TransferError(f"{name}: holds neither a model nor a state dict (keys: {', '.join(map(str, list(ckpt)[:8]))})")


def _strip_wrapper(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``YOLO(...).state_dict()`` prefixes every key with an extra ``model.``: drop it."""
    if state and all(k.startswith("model.model.") for k in state):
        return {k[len("model.") :]: v for k, v in state.items()}
    return state


def _check_index_map(index_map: Any) -> dict[int, int] | None:
    if index_map is None:
        return None
    if isinstance(index_map, IndexMap):
        return dict(enumerate(index_map.old_to_new))
    if isinstance(index_map, Sequence) and not isinstance(index_map, (str, bytes)):
        index_map = dict(enumerate(index_map))  # the list form of the attnyolo record: old i -> index_map[i]
    if not isinstance(index_map, Mapping):
        raise TransferError(f"index_map must map old layer indices to new ones, got a {type(index_map).__name__}")
    try:
        checked = {int(k): int(v) for k, v in index_map.items()}
    except (TypeError, ValueError) as e:
        raise TransferError(f"index_map must map integer layer indices to integers: {e}") from e
    if any(k < 0 or v < 0 for k, v in checked.items()):
        raise TransferError("index_map holds a negative layer index; indices count from 0")
    targets = list(checked.values())
    if len(set(targets)) != len(targets):
        dup = sorted({v for v in targets if targets.count(v) > 1})
        raise TransferError(f"index_map sends several old layers to the same new layer(s) {dup}")
    return checked


def align(source_cfg: Any, target_cfg: Any) -> IndexMap | None:
    """The map from ``source_cfg``'s layers to ``target_cfg``'s when every source layer has a place in the target
    (the target is the source with attention rows added, or the same model); ``None`` otherwise.

    :func:`attnyolo.graph.align.align_layers` gives the partial map for every other pairing of a shared base.
    """
    aligned = align_layers(source_cfg, target_cfg)
    if aligned is None or not aligned.total:
        return None
    return IndexMap(tuple(aligned.mapping[i] for i in range(aligned.source_size)), aligned.target_size)


def _find_index_map(
    net: nn.Module, source_cfg: Any, src: Mapping[str, torch.Tensor], dst: Mapping[str, torch.Tensor]
) -> tuple[dict[int, int] | None, str]:
    """The index map when the caller gives none (see the module docstring), and where it came from.

    A source that carries its architecture is aligned with the model: any two models of one base align. A bare
    state dict (or a source whose architecture does not align, e.g. edited by hand) is either the base of the
    model's attention record or a model with the same keys: of the two maps, the one that places more tensors is
    taken, so an edited state dict is never pushed through the base's map. Whatever cannot be placed then stops
    the transfer (see :func:`transfer`).
    """
    from attnyolo.graph.api import index_map as record_map

    target_cfg = getattr(net, "yaml", None)
    if not isinstance(target_cfg, Mapping):
        return None, "none"
    if isinstance(source_cfg, Mapping):
        aligned = align_layers(source_cfg, target_cfg)
        if aligned is not None:
            return aligned.mapping, "aligned"
    try:
        imap = record_map(target_cfg)
    except AttnYoloError:
        return None, "none"
    if not imap.inserted:
        return None, "none"
    record = _check_index_map(imap)
    by_record = len(_plan(src, dst, record)[0])
    by_keys = len(_plan(src, dst, None)[0])
    return (None, "none") if by_keys > by_record else (record, "model record")


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


NO_PLACE, CLASSES, LOST = "no place", "classes", "lost"
"""How a left-behind source tensor counts: its layer has no place in the target (the architecture says so), it is
a head class convolution of another class count (reported, allowed), or it had a place and would be lost."""


@dataclass(frozen=True)
class _Head:
    """What tells a class-count change apart from a loss: the target's head layer and both class counts."""

    layer: int | None
    nc_target: int | None
    nc_source: int | None

    def class_change(self, target_key: str, src: torch.Tensor, dst: torch.Tensor) -> bool:
        m = _LAYER_KEY.match(target_key)
        if self.layer is None or self.nc_target is None or not m or int(m.group(1)) != self.layer:
            return False
        if src.dim() != dst.dim() or src.shape[1:] != dst.shape[1:] or dst.shape[0] != self.nc_target:
            return False
        return self.nc_source is None or src.shape[0] == self.nc_source


def _plan(
    src: Mapping[str, torch.Tensor],
    dst: Mapping[str, torch.Tensor],
    index_map: dict[int, int] | None,
    head: _Head | None = None,
    why_unmapped: str = "is not in the index map",
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Decide every source tensor's fate without touching the model: (copies, skips with their kind)."""
    copies: list[tuple[str, str]] = []
    skips: list[tuple[str, str, str]] = []
    claimed: set[str] = set()
    for key, tensor in src.items():
        target = key
        m = _LAYER_KEY.match(key)
        if m and index_map is not None:
            old = int(m.group(1))
            if old not in index_map:
                skips.append((key, f"not in target (layer {old} {why_unmapped})", NO_PLACE))
                continue
            target = f"model.{index_map[old]}.{m.group(2)}"
        if target not in dst:
            where = f" as {target}" if target != key else ""
            skips.append((key, f"not in target (no tensor{where} in the model)", LOST))
        elif dst[target].shape != tensor.shape:
            kind = CLASSES if head is not None and head.class_change(target, tensor, dst[target]) else LOST
            skips.append((key, f"shape mismatch (src {_shape(tensor)} vs dst {_shape(dst[target])})", kind))
        elif target in claimed:
            skips.append((key, f"not in target ({target} already filled by another source tensor)", LOST))
        else:
            claimed.add(target)
            copies.append((key, target))
    return copies, skips


def _nc(cfg: Any) -> int | None:
    nc = cfg.get("nc") if isinstance(cfg, Mapping) else None
    return nc if isinstance(nc, int) and not isinstance(nc, bool) else None


def _head_of(net: nn.Module, source_cfg: Any) -> _Head:
    layers_ = getattr(net, "model", None)
    layer = len(layers_) - 1 if isinstance(layers_, nn.Sequential) and len(layers_) else None
    return _Head(layer, _nc(getattr(net, "yaml", None)), _nc(source_cfg))


def _arch_name(cfg: Mapping) -> str:
    """A short name of an architecture for a message: its attention record's base and attentions, or its layers."""
    record = cfg.get(METADATA_KEY)
    if isinstance(record, Mapping) and record.get("base"):
        attentions = sorted({a for a in (attention_name(r.module) for r in layers(cfg)) if a})
        return f"{Path(str(record['base'])).name} + {', '.join(attentions)}" if attentions else str(record["base"])
    rows = layers(cfg)
    return f"{len(rows)} layers of {', '.join(dict.fromkeys(r.module for r in rows))}"


def _different_architectures(source_cfg: Any, target_cfg: Any) -> str | None:
    """``"A vs B"`` when both sides carry an architecture and they do not align (no shared base), else ``None``."""
    if not isinstance(source_cfg, Mapping) or not isinstance(target_cfg, Mapping):
        return None
    if align_layers(source_cfg, target_cfg) is not None:
        return None
    try:
        return f"the source is {_arch_name(source_cfg)}, the model {_arch_name(target_cfg)}"
    except AttnYoloError:  # not a model YAML after all: the per-tensor list says more
        return None


def _refusal(
    name: str, total: int, lost: list[tuple[str, str]], what: str, hint: str, different: str | None = None
) -> TransferError:
    if different is not None:  # every layer shifts or changes shape: a per-tensor list would say nothing more
        return TransferError(
            f"{what} from {name}: different architecture ({different}): {len(lost)} of {total} source tensors "
            f"would be left behind; the model was not changed{hint}"
        )
    listed = "; ".join(f"{k}: {reason}" for k, reason in lost[:10])
    more = f"; ... and {len(lost) - 10} more" if len(lost) > 10 else ""
    return TransferError(
        f"{what} from {name}: {len(lost)} of {total} source tensors would be left behind ({listed}{more}); "
        f"the model was not changed{hint}"
    )


def transfer(
    model: Any,
    source: Any,
    index_map: IndexMap | Mapping[int, int] | Sequence[int] | None = None,
    *,
    strict: bool = False,
    allow_partial: bool = False,
    trust: bool = False,
) -> TransferReport:
    """Copy a model's weights into ``model`` (in place), following the layers through ``index_map``.

    Args:
        model: the model to fill: an Ultralytics model (``DetectionModel``...) or ``YOLO`` object.
        source: a checkpoint path (Ultralytics ``.pt``, a state-dict ``.pt``, ``.safetensors``), a checkpoint or
            state dict, a model / ``YOLO`` object, or a :class:`TransferSource` (:func:`load_source`). A
            checkpoint with both ``ema`` and ``model`` gives ``ema``, as in Ultralytics.
        index_map: old layer index -> new layer index: an :class:`~attnyolo.IndexMap` (as :func:`attnyolo.insert`
            returns), a mapping, or the list ``[new index of layer 0, of layer 1, ...]``. Keys
            ``model.<old>.<rest>`` become ``model.<index_map[old]>.<rest>``; a layer absent from the map is
            reported "not in target". ``None`` (the usual case) finds the map itself: a source that carries its
            architecture is aligned with the model (:func:`attnyolo.graph.align.align_layers`: base -> edited,
            edited -> the same or another edited model, edited -> base); a bare state dict takes the model's
            attention record (``model.yaml``'s ``attnyolo`` record, base -> model) or the keys as they are,
            whichever places more tensors.
        strict: also refuse the head's class convolutions of another class count (otherwise reported and allowed).
        allow_partial: accept a transfer that leaves behind source tensors that have a place in the model
            (another shape, or a key the model lacks); by default that raises :class:`TransferError`, because
            losing weights silently is what this function exists to prevent. Tensors of source layers that have
            no place in the model (an attention row the model does not have) are reported, never refused.
        trust: allow a full pickle load of a path source (see :func:`attnyolo.checkpoints.load_checkpoint`).

    Returns:
        A :class:`TransferReport`; ``report.as_table()`` renders it.

    Raises:
        TransferError: a source that holds no weights, a malformed index map, or a transfer that would leave
            tensors behind (see ``strict`` and ``allow_partial``); the model is then left untouched.
        CheckpointError: a path source that cannot be loaded safely.
    """
    from ultralytics.utils.torch_utils import intersect_dicts

    net = unwrap(model)
    checked_map = _check_index_map(index_map)
    loaded = source if isinstance(source, TransferSource) else load_source(source, trust=trust)
    src, name, source_cfg = loaded.state, loaded.name, loaded.cfg
    dst = net.state_dict()
    how = "given"
    if index_map is None:
        checked_map, how = _find_index_map(net, source_cfg, src, dst)
    why = "has no twin in the model" if how == "aligned" else "is not in the index map"
    copies, skips = _plan(src, dst, checked_map, _head_of(net, source_cfg), why)
    lost = [(k, reason) for k, reason, kind in skips if kind == LOST]
    classes = [(k, reason) for k, reason, kind in skips if kind == CLASSES]
    different = _different_architectures(source_cfg, getattr(net, "yaml", None)) if lost else None
    if strict and (lost or classes):
        raise _refusal(name, len(src), lost + classes, "strict transfer", "", different)
    if lost and not allow_partial:
        hint = " (pass allow_partial=True, CLI --allow-partial, to accept the loss)"
        raise _refusal(name, len(src), lost, "transfer", hint, different)
    live = {**dict(net.named_parameters(remove_duplicate=False)), **dict(net.named_buffers(remove_duplicate=False))}
    with torch.no_grad():
        for key, target in copies:
            if target in live:
                live[target].copy_(src[key])
            else:  # a tensor a module exposes only through its state dict: let the module load it
                net.load_state_dict({target: src[key]}, strict=False)
    filled = {t for _, t in copies}
    return TransferReport(
        source=name,
        transferred=copies,
        skipped=[(k, reason) for k, reason, _ in skips],
        newly_initialised=[k for k in dst if k not in filled],
        source_total=len(src),
        target_total=len(dst),
        key_matching_kept=len(intersect_dicts(src, dst)),
        index_map=checked_map,
        index_map_source=how,
    )
