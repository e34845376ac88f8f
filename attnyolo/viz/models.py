"""The model to visualise, from what a user has: a ``.pt``, an attnyolo ``.safetensors``, or a run folder.

Files load through attnyolo's safe loaders (no pickled code runs unless ``trust=True``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from attnyolo.models import checkpoint_model, unwrap
from attnyolo.viz.errors import VizError


def torch_model(model: Any) -> nn.Module:
    """The detection model inside an Ultralytics ``YOLO`` object (or the model itself), as a VizError if neither."""
    try:
        return unwrap(model)
    except TypeError as e:
        raise VizError(str(e)) from None


def _checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        for candidate in (path / "weights" / "best.pt", path / "weights" / "last.pt", path / "best.pt"):
            if candidate.is_file():
                return candidate
        raise VizError(f"{path}: a folder without weights/best.pt or weights/last.pt (not a run folder)")
    if not path.is_file():
        raise VizError(f"model {path}: no such file or run folder")
    return path


def load_model(source: Any, *, trust: bool = False) -> nn.Module:
    """An eval-mode, fp32 detection model from a path (``.pt``, ``.safetensors``, run folder) or a model."""
    if not isinstance(source, str | Path):
        return torch_model(source).float().eval()
    path = _checkpoint_file(Path(source))
    from attnyolo.checkpoints import load_checkpoint, load_safetensors_model

    if path.suffix == ".safetensors":
        return load_safetensors_model(path).float().eval()
    net = checkpoint_model(load_checkpoint(path, trust=trust))
    if net is not None:
        return net.float().eval()
    raise VizError(f"{path}: holds weights only (a state dict), not a model to run; pass a .pt saved by Ultralytics")
