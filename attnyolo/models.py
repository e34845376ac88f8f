"""Where the torch model is inside what users hand over: a ``YOLO`` object, a wrapped model, a checkpoint dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


def unwrap(model: Any) -> nn.Module:
    """The torch model inside an Ultralytics ``YOLO`` object, a DDP or ``torch.compile`` wrapper, or the model itself.

    Raises:
        TypeError: ``model`` is neither a torch model nor an Ultralytics ``YOLO`` object.
    """
    from ultralytics.engine.model import Model
    from ultralytics.utils.torch_utils import unwrap_model

    if isinstance(model, Model):
        model = model.model
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch model or an Ultralytics YOLO object, got {type(model).__name__}")
    return unwrap_model(model)


def checkpoint_model(ckpt: Mapping[str, Any]) -> nn.Module | None:
    """The model an Ultralytics checkpoint dict holds: ``ema`` when it has one, else ``model`` (Ultralytics'
    own preference: the EMA weights are the ones it validates and exports); ``None`` when it holds neither."""
    for key in ("ema", "model"):
        value = ckpt.get(key)
        if isinstance(value, nn.Module):
            return value
    return None
