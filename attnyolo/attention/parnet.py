"""ParNet's attention block: RepVGG branches plus Skip-Squeeze-Excitation on the identity branch.

- ParNet: Goyal, Bochkovskiy, Deng & Koltun, "Non-deep Networks", NeurIPS 2022, https://arxiv.org/abs/2110.07641
  (official code: https://github.com/imankgoyal/NonDeepNetworks, ``RepVGGBlock`` with ``se_block=True`` and
  ``SE1`` in ``imagenet/timm/models/simplenet_impl``).
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import Gate, LayerType, SafeBatchNorm2d, check_positive_int, create_act, mean_pool
from attnyolo.registry import register


def _conv_bn(channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, bias=False), SafeBatchNorm2d(channels)
    )


@register(
    "parnet",
    category="channel",
    paper="Non-deep Networks",
    year=2022,
    url="https://arxiv.org/abs/2110.07641",
    reference="official imankgoyal/NonDeepNetworks RepVGGBlock(se_block=True) + SE1 (restated in tests)",
    notes="The RepVGG-SSE block of the paper's Figure 2 at stride 1 with equal in/out channels, as the "
    "official code builds it (bias-free convs, BatchNorm on every branch, SiLU). External-Attention-pytorch's "
    "ParNetAttention differs: no BatchNorm on the SSE branch and convs with bias.",
)
class ParNetAttention(nn.Module):
    """ParNet RepVGG-SSE: ``y = SiLU(BN(conv3x3 x) + BN(conv1x1 x) + BN(x) * sigmoid(W GAP(BN(x))))``.

    Skip-Squeeze-Excitation (SSE) re-weights the RepVGG identity branch ``BN(x)`` with a single 1x1 conv
    (no bias) on its global average, summed with the 3x3 and 1x1 conv-BN branches.

    Args:
        channels: input channels C.
        act_layer: activation after the sum (paper: SiLU).
        gate_layer: SSE gate (paper: sigmoid).
    """

    def __init__(self, channels: int, *, act_layer: LayerType = "silu", gate_layer: LayerType = "sigmoid"):
        super().__init__()
        check_positive_int("channels", channels)
        self.conv3x3 = _conv_bn(channels, 3)
        self.conv1x1 = _conv_bn(channels, 1)
        self.identity = SafeBatchNorm2d(channels)
        self.sse = nn.Conv2d(channels, channels, 1, bias=False)
        self.gate = Gate(gate_layer, kind="channel")
        self.act = create_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        skip = self.identity(x)
        skip = skip * self.gate(self.sse(mean_pool(skip, (2, 3))))
        return self.act(self.conv3x3(x) + self.conv1x1(x) + skip)
