"""Weight transfer that follows layers, not key names, through an insertion's index map.

Ultralytics moves pretrained weights by matching state-dict keys (``intersect_dicts`` in
``ultralytics/utils/torch_utils.py``, used by ``DetectionModel.load``). An insertion renumbers every layer behind
the insert point, so ``model.13.cv1.conv.weight`` of the base model meets a different layer (or nothing) in the
edited one and is silently dropped. :func:`transfer` renames ``model.<old>.<rest>`` to
``model.<index_map[old]>.<rest>`` first, then copies every tensor whose shape matches, and reports what moved,
what stayed behind and why, and what the edited model initialises itself (inserted modules).

The index map is found without the caller's help: when the source carries its architecture (a checkpoint's or a
model's ``yaml``, the ``model_yaml`` of an attnyolo ``.safetensors``), the source's layers are aligned with the
model's (:func:`align`: the model must be the source with attention rows spliced in); otherwise the model's own
attention rows (the ``attnyolo`` record the engine writes into ``model.yaml``) give the map from the base.
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

from attnyolo.checkpoints import load_checkpoint, safetensors_model_yaml
from attnyolo.errors import AttnYoloError
from attnyolo.graph.edit import IndexMap
from attnyolo.models import checkpoint_model, unwrap

_LAYER_KEY = re.compile(r"^model\.(\d+)\.(.+)$")


class TransferError(AttnYoloError):
    """A transfer that cannot run (bad source or index map) or, in strict mode, would leave base tensors behind."""


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


def _state_dict_of(source: Any, trust: bool) -> tuple[dict[str, torch.Tensor], str, Any]:
    """Normalise every accepted source to ``(state dict, description, model YAML or None)``."""
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        ckpt = load_checkpoint(Path(source), trust=trust)
        cfg = _yaml_of_checkpoint(ckpt)
        if cfg is None and checkpoint_model(ckpt) is None:
            cfg = _yaml_of_safetensors(Path(source))
        return _state_dict_of_checkpoint(ckpt, name), name, cfg
    if isinstance(source, Mapping):
        return _state_dict_of_checkpoint(source, "the source dict"), "a state dict", _yaml_of_checkpoint(source)
    try:
        net = unwrap(source)
    except TypeError as e:
        raise TransferError(
            f"cannot transfer from a {type(source).__name__}: expected a checkpoint path (.pt, .safetensors), a "
            "state dict or a model"
        ) from e
    return dict(net.state_dict()), type(net).__name__, getattr(net, "yaml", None)


def _yaml_of_checkpoint(ckpt: Mapping[str, Any]) -> Any:
    return getattr(checkpoint_model(ckpt), "yaml", None)


def _yaml_of_safetensors(path: Path) -> Any:
    """The architecture in an attnyolo ``.safetensors`` (``None`` for other files)."""
    if path.suffix != ".safetensors":
        return None
    try:
        return safetensors_model_yaml(path)
    except AttnYoloError:
        return None


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


def _same_row(a: Any, b: Any) -> bool:
    return (a.module, a.repeats, a.args) == (b.module, b.repeats, b.args)


def align(source_cfg: Any, target_cfg: Any) -> IndexMap | None:
    """The map from ``source_cfg``'s layers to ``target_cfg``'s when the target is the source with attention rows
    spliced into its edges (what :func:`attnyolo.insert` does); ``None`` when it is not.

    Rows are matched in order by module, repeats and args; the target may have extra attnyolo attention rows
    only; and every matched layer must read, through any inserted rows, the layers its source reads.
    """
    from attnyolo.graph.layers import INPUT, check_model, layers

    try:
        check_model(source_cfg)
        check_model(target_cfg)
    except AttnYoloError:
        return None
    src, dst = layers(source_cfg), layers(target_cfg)
    mapping: dict[int, int] = {}
    j = 0
    for row in src:
        while j < len(dst) and not _same_row(row, dst[j]):
            if dst[j].attention is None:
                return None
            j += 1
        if j == len(dst):
            return None
        mapping[row.index] = j
        j += 1
    if any(x.attention is None for x in dst[j:]):
        return None
    inserted = set(range(len(dst))) - set(mapping.values())

    def through(k: int) -> int:
        while k in inserted and k != INPUT:
            k = dst[k].inputs[0]
        return k

    for row in src:
        want = [x if x == INPUT else mapping[x] for x in row.inputs]
        if want != [through(x) for x in dst[mapping[row.index]].inputs]:
            return None
    return IndexMap(tuple(mapping[i] for i in range(len(src))), len(dst))


def _find_index_map(net: nn.Module, source_cfg: Any) -> tuple[dict[int, int] | None, str]:
    """The index map when the caller gives none (see the module docstring), and where it came from."""
    from attnyolo.graph.api import index_map as record_map

    target_cfg = getattr(net, "yaml", None)
    if not isinstance(target_cfg, Mapping):
        return None, "none"
    if isinstance(source_cfg, Mapping):
        aligned = align(source_cfg, target_cfg)
        if aligned is not None:
            return _check_index_map(aligned), "aligned"
    try:
        imap = record_map(target_cfg)
    except AttnYoloError:
        return None, "none"
    if imap.inserted:
        return _check_index_map(imap), "model record"
    return None, "none"


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _plan(
    src: Mapping[str, torch.Tensor], dst: Mapping[str, torch.Tensor], index_map: dict[int, int] | None
) -> tuple[list[tuple[str, str]], list[tuple[str, str, bool]]]:
    """Decide every source tensor's fate without touching the model: (copies, skips with 'counts for strict')."""
    copies: list[tuple[str, str]] = []
    skips: list[tuple[str, str, bool]] = []
    claimed: set[str] = set()
    for key, tensor in src.items():
        target = key
        m = _LAYER_KEY.match(key)
        if m and index_map is not None:
            old = int(m.group(1))
            if old not in index_map:
                skips.append((key, f"not in target (layer {old} is not in the index map)", False))
                continue
            target = f"model.{index_map[old]}.{m.group(2)}"
        if target not in dst:
            where = f" as {target}" if target != key else ""
            skips.append((key, f"not in target (no tensor{where} in the model)", True))
        elif dst[target].shape != tensor.shape:
            skips.append((key, f"shape mismatch (src {_shape(tensor)} vs dst {_shape(dst[target])})", True))
        elif target in claimed:
            skips.append((key, f"not in target ({target} already filled by another source tensor)", True))
        else:
            claimed.add(target)
            copies.append((key, target))
    return copies, skips


def transfer(
    model: Any,
    source: Any,
    index_map: IndexMap | Mapping[int, int] | Sequence[int] | None = None,
    *,
    strict: bool = False,
    trust: bool = False,
) -> TransferReport:
    """Copy a base model's weights into ``model`` (in place), following the layers through ``index_map``.

    Args:
        model: the model to fill: an Ultralytics model (``DetectionModel``...) or ``YOLO`` object.
        source: a checkpoint path (Ultralytics ``.pt``, a state-dict ``.pt``, ``.safetensors``), a checkpoint or
            state dict, or a model / ``YOLO`` object. A checkpoint with both ``ema`` and ``model`` gives ``ema``,
            as in Ultralytics.
        index_map: old layer index -> new layer index: an :class:`~attnyolo.IndexMap` (as :func:`attnyolo.insert`
            returns), a mapping, or the list ``[new index of layer 0, of layer 1, ...]``. Keys
            ``model.<old>.<rest>`` become ``model.<index_map[old]>.<rest>``; a layer absent from the map is
            reported "not in target". ``None`` (the usual case) finds the map itself: by aligning the source's
            architecture with the model's when the source carries one, else from the model's attention rows
            (``model.yaml``'s ``attnyolo`` record); a model without attention rows keeps the keys as they are.
        strict: raise :class:`TransferError` (and leave the model untouched) when any source tensor of a mapped
            layer would be left behind (missing in the model, or another shape).
        trust: allow a full pickle load of a path source (see :func:`attnyolo.checkpoints.load_checkpoint`).

    Returns:
        A :class:`TransferReport`; ``report.as_table()`` renders it.

    Raises:
        TransferError: a source that holds no weights, a malformed index map, or a strict transfer that would
            leave tensors behind.
        CheckpointError: a path source that cannot be loaded safely.
    """
    from ultralytics.utils.torch_utils import intersect_dicts

    net = unwrap(model)
    checked_map = _check_index_map(index_map)
    src, name, source_cfg = _state_dict_of(source, trust)
    how = "given"
    if index_map is None:
        checked_map, how = _find_index_map(net, source_cfg)
    dst = net.state_dict()
    copies, skips = _plan(src, dst, checked_map)
    left_behind = [(k, reason) for k, reason, counts in skips if counts]
    if strict and left_behind:
        listed = "; ".join(f"{k}: {reason}" for k, reason in left_behind[:10])
        more = f"; ... and {len(left_behind) - 10} more" if len(left_behind) > 10 else ""
        raise TransferError(
            f"strict transfer from {name}: {len(left_behind)} of {len(src)} source tensors would be left behind "
            f"({listed}{more}); the model was not changed"
        )
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
