"""The attention layers of a model, with one label format shared by viz, the γ CSV, the report and the benchmarks.

Every zoo attention in a built model is an :class:`~attnyolo.graph.ultralytics.AttentionLayer` (the adapter that
holds the identity-start ``gamma``): an inserted row (``model.16``) or the ``attn`` of a bottleneck inside a block
(``model.4.m.0.attn``, see :mod:`attnyolo.graph.inside_modules`). :func:`attention_layers` finds both.

**Labels** are the layer's module path in the detection model without the leading ``model.``:

- ``"16"``: the inserted row 16 (its Ultralytics layer index);
- ``"4.m.0.attn"``: the attention inside bottleneck ``m.0`` of layer 4.

A label is the prefix of the layer's tensors in the state dict (``model.16.gamma``, ``model.4.m.0.attn.gamma``)
without ``model.``, so it is stable across runs, processes and checkpoint formats, and it says where the attention
is. The first number is always the Ultralytics layer index; :func:`label_order` sorts labels in model order.
"""

from __future__ import annotations

from typing import Any

from attnyolo.graph.adapter import AttentionLayer
from attnyolo.models import unwrap


def attention_layers(model: Any) -> dict[str, AttentionLayer]:
    """``{label: AttentionLayer}`` of every zoo attention in ``model``, inserted rows and inside blocks, in model
    order (``named_modules`` order: layer by layer, a block's attentions at their layer; see the module docstring
    for the labels).

    Args:
        model: an Ultralytics model, a ``YOLO`` object, or any ``nn.Module`` holding attnyolo layers.

    Returns:
        The adapters themselves (``.attention`` the zoo name, ``.attn`` the zoo module, ``.gamma`` the identity-start
        scalar or ``None``); an empty dict for a model without attention.
    """
    net = unwrap(model)
    found: dict[str, AttentionLayer] = {}
    for path, m in net.named_modules():
        if isinstance(m, AttentionLayer):
            found[_label(path)] = m
    return found


def _label(path: str) -> str:
    # "model.16" -> "16"; "model.4.m.0.attn" -> "4.m.0.attn"; a bare stack of layers has no "model." to drop
    return path.removeprefix("model.") if path.startswith("model.") else path


def label_order(label: str | int) -> tuple:
    """Sort key of labels in model order: by layer index, an inside-block attention after its layer's number
    (``"15" < "15.m.0.attn" < "15.m.1.attn" < "16"``). Plain ints (older γ CSVs) sort as their label."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in str(label).split("."))
