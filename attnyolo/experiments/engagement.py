"""Engagement: how much each attention layer changes the feature map it is given, ``r = ‖out − in‖ / ‖in‖``.

An identity-start layer (``out = in + γ·(attn(in) − in)``, γ = 0 at the start) that barely moves during a short
fine-tune leaves its feature map almost unchanged, whatever its mAP says: ``r`` measures that directly. For every
attention layer of :func:`attnyolo.graph.attention_layers.attention_layers` (inserted rows and attention inside
blocks, with the same labels as ``attnyolo viz`` and the γ CSV), a forward hook on the layer reads its input and
its output (γ included) per image; :func:`engagement` returns the median and maximum over the images, and every
per-image value.

Images are prepared as Ultralytics' validator prepares them for a batch of one image: the long side resized to
``imgsz``, then letterboxed (``LetterBox(scaleup=False)``, grey 114 padding) to the rectangle the validator's
``rect`` batches use (a multiple of the stride, plus half a stride of padding), RGB in [0, 1]. The model runs in
eval mode without gradients; its training mode is restored afterwards.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from ultralytics.data.augment import LetterBox
from ultralytics.utils.patches import imread

from attnyolo.data.check import check_data, split_images
from attnyolo.errors import AttnYoloError
from attnyolo.graph.attention_layers import attention_layers
from attnyolo.models import unwrap


class EngagementError(AttnYoloError):
    """A model without attention layers, no images, or an image that cannot be read."""


@dataclass(frozen=True)
class EngagementStat:
    """``r = ‖out − in‖ / ‖in‖`` of one attention layer over a set of images.

    Attributes:
        label: the layer's label (``"16"``, ``"4.m.0.attn"``).
        attention: the zoo name.
        values: ``r`` per image, in the order of the images.
    """

    label: str
    attention: str
    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def max(self) -> float:
        return float(max(self.values))


def validator_image(path: str | Path, imgsz: int = 320, stride: int = 32) -> torch.Tensor:
    """``path`` as Ultralytics' validator feeds it in a batch of its own: ``(1, 3, H, W)`` float RGB in [0, 1].

    The validator's dataset (``rect=True``, ``pad=0.5``) resizes the long side to ``imgsz`` (linear interpolation,
    ``BaseDataset.load_image``), and letterboxes it (``LetterBox(scaleup=False)``) to the batch shape
    ``ceil(ratio * imgsz / stride + 0.5) * stride`` of ``set_rectangle``.
    """
    im = imread(str(path))  # BGR, as Ultralytics reads it
    if im is None:
        raise EngagementError(f"image {path}: no such file or not a readable image")
    h0, w0 = im.shape[:2]
    r = imgsz / max(h0, w0)
    if r != 1:
        size = (min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz))
        im = cv2.resize(im, size, interpolation=cv2.INTER_LINEAR)
    aspect = h0 / w0
    ratio = [aspect, 1] if aspect < 1 else [1, 1 / aspect] if aspect > 1 else [1, 1]
    shape = np.ceil(np.array(ratio) * imgsz / stride + 0.5).astype(int) * stride
    im = LetterBox(new_shape=(int(shape[0]), int(shape[1])), scaleup=False)(image=im)
    rgb = np.ascontiguousarray(im[..., ::-1].transpose(2, 0, 1))
    return torch.from_numpy(rgb)[None].float() / 255


def _images(images: Any) -> list[Path]:
    """A data YAML's validation split, a folder, a ``.txt`` image list, one image, or a list of images."""
    if isinstance(images, str | Path) and Path(images).suffix.lower() in {".yaml", ".yml"}:
        images = check_data(images)["val"]
    found = split_images(images)
    if not found:
        raise EngagementError(f"no images in {images}")
    return found


def _relative_change(out: torch.Tensor, x: torch.Tensor) -> list[float]:
    """``‖out_i − x_i‖ / ‖x_i‖`` per image ``i`` of a batch, in float64 (0 when both are 0, inf for 0 input)."""
    diff = (out.detach().double() - x.detach().double()).flatten(1).norm(dim=1)
    base = x.detach().double().flatten(1).norm(dim=1)
    ratio = torch.where(base > 0, diff / base.clamp_min(torch.finfo(torch.float64).tiny), diff * math.inf)
    return torch.where(diff == 0, torch.zeros_like(ratio), ratio).tolist()


def _model_name(model: Any, net: nn.Module) -> str:
    yaml = getattr(net, "yaml", None)
    source = yaml.get("yaml_file") if isinstance(yaml, dict) else None
    return str(model) if isinstance(model, str | Path) else str(source or type(net).__name__)


def engagement(
    model: Any, images: Any, imgsz: int = 320, *, batch: int = 1, stride: int | None = None
) -> dict[str, EngagementStat]:
    """``{label: EngagementStat}`` of every attention layer of ``model`` over ``images``.

    Args:
        model: an Ultralytics detection model or ``YOLO`` object holding attnyolo attention.
        images: a data YAML (its ``val`` split), a folder, a ``.txt`` image list, an image path, or a list of paths.
        imgsz: the validator's image size (long side).
        batch: images per forward pass; images of different shapes are never batched together.
        stride: letterbox stride; default the model's largest stride (32 for YOLO detectors).

    Raises:
        EngagementError: the model has no attention layers, there are no images, or one cannot be read.
    """
    net = unwrap(model)
    layers = attention_layers(net)
    if not layers:
        raise EngagementError(
            f"model {_model_name(model, net)}: no attention layers (insert some with attnyolo.insert)"
        )
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise EngagementError(f"batch must be a positive integer, got {batch!r}")
    paths = _images(images)
    if stride is None:
        strides = getattr(net, "stride", None)
        stride = int(strides.max()) if isinstance(strides, torch.Tensor) and strides.numel() else 32
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32

    values: dict[str, list[float]] = {label: [] for label in layers}
    handles = [
        layer.register_forward_hook(
            lambda _m, args, out, label=label: values[label].extend(_relative_change(out, args[0]))
        )
        for label, layer in layers.items()
    ]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for group in _same_shape_batches(paths, imgsz, stride, batch):
                net(torch.cat(group).to(device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return {label: EngagementStat(label, layer.attention, tuple(values[label])) for label, layer in layers.items()}


def _same_shape_batches(paths: Sequence[Path], imgsz: int, stride: int, batch: int):
    """Consecutive images in groups of at most ``batch`` that share one letterboxed shape."""
    group: list[torch.Tensor] = []
    for p in paths:
        x = validator_image(p, imgsz, stride)
        if group and (len(group) == batch or group[0].shape != x.shape):
            yield group
            group = []
        group.append(x)
    if group:
        yield group
