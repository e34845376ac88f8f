"""Helpers of the viz tests."""

from __future__ import annotations

import torch


def randomised_detector(name: str, seed: int = 0, **hparams) -> torch.nn.Module:
    """YOLOv8n with ``name`` after the three neck outputs, every weight drawn at random, gamma = 1, eval mode.

    An untrained detector's features are nearly constant in space, which would make every map flat. The
    attention's own weights are drawn smaller, so its gates stay off saturation (a saturated softmax is one-hot at
    the same key for every image)."""
    import attnyolo as ay

    cfg, _ = ay.insert("yolov8n.yaml", name, **hparams)
    model = ay.build(cfg, nc=3)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if getattr(m, "running_var", None) is not None:
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            if getattr(m, "gamma", None) is not None and m.gamma.ndim == 0:
                m.gamma.fill_(1.0)
            if hasattr(m, "attn") and hasattr(m, "attention"):  # the inserted layer: weaker weights, so that
                for p in m.attn.parameters():  # softmax and sigmoid gates do not saturate on the random features
                    p.mul_(0.2)
    return model.eval()
