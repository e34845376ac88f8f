"""Normalisation-based attention: channel weights from the scale factors of a BatchNorm.

- NAM: Liu, Shao, Wang & Liu, "NAM: Normalization-based Attention Module", NeurIPS 2021 Workshop
  (ImageNet PPML), https://arxiv.org/abs/2111.12419 (official code: https://github.com/Christian-lyc/NAM).
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import Gate, LayerType, SafeBatchNorm2d, check_positive_int
from attnyolo.registry import register


@register(
    "nam",
    category="channel",
    paper="NAM: Normalization-based Attention Module",
    year=2021,
    url="https://arxiv.org/abs/2111.12419",
    reference="official Christian-lyc/NAM Channel_Att (forward restated in tests)",
    notes="Channel sub-module only, as the official code (its spatial sub-module, Eq. 3, was never released "
    "and is off there: no_spatial=True). As the official code, the weights w_i = |gamma_i| / sum_j |gamma_j| "
    "are constants in the backward pass (gamma.data); gamma still trains through the BatchNorm. The paper's "
    "L1 penalty on gamma belongs to the training loss, not to the module.",
)
class NormalizationAttention(nn.Module):
    """NAM channel attention: ``y = x * sigmoid(w * BN(x))``, ``w_i = |gamma_i| / sum_j |gamma_j|`` (Eq. 2).

    The BatchNorm's scale factors measure how much each channel varies; normalised to sum to 1 they weight
    the normalised map before the sigmoid. ``C`` parameters plus ``C`` shifts (the BatchNorm's own).

    Args:
        channels: input channels C.
        gate_layer: gate (paper: sigmoid).
    """

    def __init__(self, channels: int, *, gate_layer: LayerType = "sigmoid"):
        super().__init__()
        check_positive_int("channels", channels)
        self.bn = SafeBatchNorm2d(channels, affine=True)
        self.gate = Gate(gate_layer, kind="channel_spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        gamma = self.bn.weight.detach().abs()
        w = (gamma / gamma.sum()).reshape(1, -1, 1, 1)
        return x * self.gate(w * self.bn(x))
