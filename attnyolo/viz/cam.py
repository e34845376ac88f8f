"""Class-activation maps for detectors with the ``grad-cam`` package's EigenCAM.

Why EigenCAM (Muhammad & Yeasin 2020, https://arxiv.org/abs/2008.00299): it projects a layer's activations on
their first principal component, so it needs neither gradients nor a scalar "class score" target. A detector
has no single class output (thousands of boxes, each with its own scores), which is what the gradient methods
(Grad-CAM, Grad-CAM++, ...) need a target for; EigenCAM is the one method of the package that is well defined
on a YOLO head as it is. The CAM is computed on the feature maps the detection head reads (the neck outputs)
and averaged over them, as ``grad-cam`` aggregates several target layers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CAM_METHODS = ("eigen",)


class _FirstOutput(nn.Module):
    """The detector's raw prediction tensor alone: ``grad-cam`` expects a model that returns one tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y[0] if isinstance(y, list | tuple) else y


def head_inputs(model: nn.Module) -> list[nn.Module]:
    """The layers the detection head reads (its ``f`` list), the usual CAM target layers for YOLO."""
    layers = model.model
    head = layers[-1]
    frm = head.f if isinstance(head.f, list) else [head.f]
    return [layers[i if i >= 0 else len(layers) - 1 + i] for i in frm]


def eigen_cam(model: nn.Module, x: torch.Tensor, target_layers: list[nn.Module] | None = None) -> np.ndarray:
    """EigenCAM of ``model`` for the ``(1, 3, H, W)`` input ``x``: an ``(H, W)`` float32 map in [0, 1]."""
    from pytorch_grad_cam import EigenCAM

    was_training = model.training
    model.eval()
    try:
        cam = EigenCAM(_FirstOutput(model), target_layers or head_inputs(model))
        with cam:
            # targets are unused by EigenCAM; passing them skips grad-cam's classifier-style argmax
            out = cam(x, targets=[lambda y: y.sum()])
    finally:
        model.train(was_training)
    return np.asarray(out[0], dtype=np.float32)
