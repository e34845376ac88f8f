"""The model to visualise, from what a user has: a ``.pt``, an attnyolo ``.safetensors``, or a run folder.

Files load through attnyolo's safe loaders (no pickled code runs unless ``trust=True``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from attnyolo.viz.errors import VizError


def torch_model(model: Any) -> nn.Module:
    """The ``nn.Module`` inside an Ultralytics ``YOLO`` object (or the module itself)."""
    inner = getattr(model, "model", None)
    if not isinstance(model, nn.Module) and isinstance(inner, nn.Module):
        return inner
    if isinstance(model, nn.Module):
        return model
    raise VizError(f"expected a detection model or a YOLO object, got {type(model).__name__}")


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
    ckpt = load_checkpoint(path, trust=trust)
    for key in ("ema", "model"):
        if isinstance(ckpt.get(key), nn.Module):
            return ckpt[key].float().eval()
    raise VizError(f"{path}: holds weights only (a state dict), not a model to run; pass a .pt saved by Ultralytics")
