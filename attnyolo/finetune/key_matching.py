"""The positive control: load a base into an edited model the way community edits are loaded today.

``yolo train model=EDITED.yaml pretrained=BASE.pt`` builds the edited model and loads the base with
``DetectionModel.load``: Ultralytics' ``intersect_dicts`` keeps every base tensor whose key (``model.<i>.<rest>``)
and shape exist in the edited model, whatever layer now sits at index ``i``. An attention inserted at row ``k``
shifts every later row by one, so the tensors of the layers after ``k`` land in the wrong layer (when the shapes
happen to match) or are dropped; on the shipped base key matching keeps 91 of 355 tensors for ``cbam@backbone``
and 210 for ``cbam@neck``, where :func:`attnyolo.transfer` keeps all 355.

:func:`load_by_keys` does exactly that key matching (``intersect_dicts`` then ``load_state_dict(strict=False)``,
as ``DetectionModel.load`` does) and returns a :class:`~attnyolo.weights.TransferReport`, so a grid variant with
``load: keys`` reports what it kept and left like any transfer. It measures, inside attnyolo's own verdicts, what
the usual loading costs.
"""

from __future__ import annotations

from typing import Any

import torch
from ultralytics.utils.torch_utils import intersect_dicts

from attnyolo.models import unwrap
from attnyolo.weights import TransferReport, load_source

LOAD_MODES = ("transfer", "keys")
"""How a grid variant gets the base's weights: attnyolo's transfer (default) or Ultralytics' key matching."""


def load_by_keys(model: Any, source: Any, *, trust: bool = False) -> TransferReport:
    """Load ``source`` into ``model`` (in place) by Ultralytics' key matching, as ``pretrained=BASE.pt`` does.

    Args:
        model: the edited Ultralytics model (or ``YOLO`` object) to fill.
        source: the base: a checkpoint path, a checkpoint or state dict, a model, as :func:`attnyolo.transfer`
            takes (loaded safely; ``trust`` allows a full pickle of a path).

    Returns:
        A :class:`~attnyolo.weights.TransferReport`: ``transferred`` the kept ``(key, key)`` pairs, ``skipped``
        the base tensors left behind (no such key in the model, or another shape there), ``newly_initialised`` the
        model's tensors that kept their own initialisation. ``index_map_source`` is ``"key matching"``.
    """
    net = unwrap(model)
    loaded = load_source(source, trust=trust)
    src = {k: v.float() if v.is_floating_point() else v for k, v in loaded.state.items()}  # as model.float()
    dst = net.state_dict()
    kept = intersect_dicts(src, dst)
    with torch.no_grad():
        net.load_state_dict(kept, strict=False)
    skipped = [
        (k, "not in model" if k not in dst else f"shape mismatch {tuple(v.shape)} -> {tuple(dst[k].shape)}")
        for k, v in src.items()
        if k not in kept
    ]
    return TransferReport(
        source=loaded.name,
        transferred=[(k, k) for k in kept],
        skipped=skipped,
        newly_initialised=[k for k in dst if k not in kept],
        source_total=len(src),
        target_total=len(dst),
        key_matching_kept=len(kept),
        index_map=None,
        index_map_source="key matching",
    )
