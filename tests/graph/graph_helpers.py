"""Shared helpers of the insertion-engine tests: shipped YAMLs, building, forward-hook channel capture."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

from attnyolo.graph import yaml_io  # noqa: E402
from attnyolo.graph.channels import scale_names  # noqa: E402
from attnyolo.graph.layers import INPUT, attention_name, layers  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"

# Families of shipped YAMLs that the build matrix leaves out, and why (recorded by a test).
SKIPPED = {
    "yolo11-cls-resnet18.yaml": "TorchVision layer downloads torchvision's resnet18 weights (weights=DEFAULT) when "
    "built; nothing may download at run time",
}


def shipped() -> list[Path]:
    return yaml_io.shipped_yamls()


def shipped_names() -> list[str]:
    return [p.name for p in shipped()]


def matrix_scales(cfg: dict) -> list[str | None]:
    """Scales n and s where the YAML has them; its only size otherwise (v3, v9, single-scale v10/RT-DETR)."""
    names = scale_names(cfg)
    picked = [s for s in ("n", "s") if s in names]
    return picked or (names[:1] if names else [None])


def channels_of(out) -> object:
    """Channels of a layer output: int for a tensor, list for a list/tuple of tensors."""
    if isinstance(out, torch.Tensor):
        return out.shape[1]
    if isinstance(out, (list, tuple)):
        return [channels_of(x) for x in out]
    return type(out).__name__


def record_channels(model: torch.nn.Module, imgsz: int = 64) -> dict[int, object]:
    """Output channels of every layer of an Ultralytics model, captured by forward hooks on one forward pass."""
    seen: dict[int, object] = {}
    handles = [
        layer.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, channels_of(o)))
        for k, layer in enumerate(model.model)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, imgsz, imgsz))
    finally:
        for h in handles:
            h.remove()
    return seen


def shapes(out) -> object:
    """Nested shapes of a model output (tensors -> tuples; dicts, lists and tuples recursed)."""
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, dict):
        return {k: shapes(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [shapes(x) for x in out]
    return out


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def logical_target(cfg: dict, j: int) -> int:
    """Follow attention rows back to the non-attention layer they read (``j`` itself if not attention)."""
    all_layers = layers(cfg)
    while j != INPUT and attention_name(all_layers[j].module) is not None:
        j = all_layers[j].inputs[0]
    return j


def with_scale(cfg: dict, scale: str | None) -> dict:
    d = copy.deepcopy(cfg)
    if scale:
        d["scale"] = scale
    return d
