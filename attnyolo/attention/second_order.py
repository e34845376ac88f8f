"""Second-order channel attention: channel weights from the square root of the channel covariance matrix.

- SOCA: Dai, Cai, Zhang, Xia & Zhang, "Second-order Attention Network for Single Image Super-Resolution",
  CVPR 2019, https://openaccess.thecvf.com/content_CVPR_2019/html/Dai_Second-Order_Attention_Network_for_Single_Image_Super-Resolution_CVPR_2019_paper.html
  (official code: https://github.com/daitao/SAN, ``SOCA`` in ``model/san.py`` with ``MPNCOV``'s covariance
  pooling and Newton-Schulz square root).
"""

from __future__ import annotations

import torch
from torch import nn

from attnyolo.attention._base import Gate, LayerType, check_positive_int, create_act, reduced_channels
from attnyolo.registry import register


def covariance_pool(x: torch.Tensor) -> torch.Tensor:
    """``Sigma = X I_bar X^T`` with ``I_bar = (I - 1/s) / s``, ``s = H*W`` (SOCA Eq. 5): ``(B, C, C)``.

    Computed as the covariance of the centred features (the same matrix without the ``s x s`` ``I_bar``).
    """
    b, c, h, w = x.shape
    feats = x.reshape(b, c, h * w)
    centred = feats - feats.mean(-1, keepdim=True)
    return centred @ centred.transpose(1, 2) / (h * w)


def newton_schulz_sqrt(sigma: torch.Tensor, iterations: int, eps: float = 1e-12) -> torch.Tensor:
    """Matrix square root of ``sigma`` (``(B, C, C)``, symmetric PSD) by ``iterations`` Newton-Schulz steps.

    Pre-normalisation ``A = Sigma / tr(Sigma)`` (Eq. 8), then ``Y_0 = A``, ``Z_0 = I`` and
    ``Y_n = 1/2 Y_{n-1} (3I - Z_{n-1} Y_{n-1})``, ``Z_n = 1/2 (3I - Z_{n-1} Y_{n-1}) Z_{n-1}`` (Eq. 7), and
    post-compensation ``Y_N sqrt(tr(Sigma))`` (Eq. 9). The trace is floored at ``eps``: a constant map (or a
    single position) has a zero covariance, whose square root is zero; the authors' code divides by zero there.
    """
    c = sigma.shape[-1]
    eye3 = 3.0 * torch.eye(c, dtype=sigma.dtype, device=sigma.device)
    trace = sigma.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(eps)[:, None, None]
    y = sigma / trace
    z = torch.eye(c, dtype=sigma.dtype, device=sigma.device).expand_as(sigma)
    for _ in range(iterations - 1):
        t = 0.5 * (eye3 - z @ y)
        y, z = y @ t, t @ z
    y = 0.5 * y @ (eye3 - z @ y)  # the last step needs only Y
    return y * trace.sqrt()


@register(
    "soca",
    category="channel",
    paper="Second-order Attention Network for Single Image Super-Resolution",
    year=2019,
    url="https://openaccess.thecvf.com/content_CVPR_2019/html/Dai_Second-Order_Attention_Network_for_Single_"
    "Image_Super-Resolution_CVPR_2019_paper.html",
    reference="official daitao/SAN SOCA + MPNCOV (forward restated loop by loop in tests)",
    notes="Reduction r=16 as SAN's models (the class default in the official code is 8, overridden by the "
    "model's reduction=16). The official code crops maps larger than 1000x1000 to their centre first (an "
    "SR-specific cost bound, not applied here) and divides by a zero trace on a constant map (floored here). "
    "Covariance and square root are computed in float32 for half inputs.",
)
class SecondOrderChannelAttention(nn.Module):
    """SOCA: ``y = x * sigmoid(W_U relu(W_D z))``, ``z_c`` = mean of row c of ``sqrt(Cov(x))`` (Eq. 5-10).

    Global covariance pooling of the ``C x C`` channel covariance, normalised by its matrix square root
    (``iterations`` Newton-Schulz steps, the paper's N = 5), averaged row-wise into a channel descriptor
    (Eq. 10), then SE's excitation (two 1x1 convs with bias, ReLU, sigmoid).

    Memory: a ``C x C`` matrix per image (at C = 1024: 4 MiB); cost ``O(C^3)`` per iteration.

    Args:
        channels: input channels C.
        rd_ratio: 1/r of the excitation (paper: r = 16).
        rd_channels: hidden width; overrides ``rd_ratio``.
        rd_divisor: round the hidden width to a multiple of this (1: the paper's C/r, at least 1).
        iterations: Newton-Schulz iterations N (paper: 5).
        act_layer: excitation activation (paper: ReLU).
        gate_layer: gate (paper: sigmoid).
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        iterations: int = 5,
        act_layer: LayerType = "relu",
        gate_layer: LayerType = "sigmoid",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("iterations", iterations)
        hidden = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.iterations = iterations
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = create_act(act_layer)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = Gate(gate_layer, kind="channel")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c = x.shape[:2]
        sigma = covariance_pool(x.float())  # half precision would overflow the C x C products
        z = newton_schulz_sqrt(sigma, self.iterations).mean(1)  # Eq. 10 (dim 1 as the authors' code; symmetric)
        z = z.to(x.dtype).reshape(b, c, 1, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(z))))
