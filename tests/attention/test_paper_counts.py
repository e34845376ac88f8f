"""Parameter counts the papers report, reproduced by inserting zoo modules into torchvision's networks.

ResNet-50 placement (SE, CBAM, ECA, Triplet, SimAM papers): after the last BN of every bottleneck, before the
residual add, i.e. ``bottleneck.bn3 -> Sequential(bn3, module(C))``. BAM: after stages 1-3 (``layer1..3``), as
the official code (``bam1..3`` in ``MODELS/model_resnet.py``). Coordinate attention: inside every
MobileNetV2 inverted residual that expands (t=6), after the depthwise conv + BN + ReLU6 and before the
linear projection, as the official ``mbv2_ca.py``. Counts come from the modules' real parameters.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2, resnet50

from attnyolo.registry import available, create

RESNET50 = 25_557_032


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _resnet50_with(name: str, stage_hparams: list[dict] | None = None, **hparams) -> nn.Module:
    net = resnet50(weights=None)
    for stage, layer in enumerate((net.layer1, net.layer2, net.layer3, net.layer4)):
        extra = stage_hparams[stage] if stage_hparams else {}
        for block in layer:
            block.bn3 = nn.Sequential(block.bn3, create(name, block.bn3.num_features, **hparams, **extra))
    return net


def _needs(name: str) -> None:
    if name not in available():
        pytest.fail(f"{name!r} is not in the zoo (written by another family's file)")


def _runs(net: nn.Module, name: str, expected_calls: int) -> None:
    """Every inserted module sits in the forward path and keeps the shapes (one 64x64 image, eval mode)."""
    cls = type(create(name, 8))
    calls = []
    for m in net.modules():
        if type(m) is cls:
            m.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape == out.shape))
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    assert calls == [True] * expected_calls


def test_resnet50_baseline():
    assert _count(resnet50(weights=None)) == RESNET50


def test_resnet50_se_r16_is_28_088_024():
    _needs("se")
    assert _count(_resnet50_with("se")) == 28_088_024


def test_resnet50_cbam_paper_is_28_089_624():
    net = _resnet50_with("cbam")
    assert _count(net) == 28_089_624
    _runs(net, "cbam", 16)


def test_resnet50_cbam_timm_style_without_mlp_bias_is_28_073_576():
    assert _count(_resnet50_with("cbam", mlp_bias=False)) == 28_073_576


def test_resnet50_triplet_is_25_561_832():
    net = _resnet50_with("triplet")
    assert _count(net) == 25_561_832  # +4,800 = 16 blocks x 3 branches x (2*7*7 + 2)
    _runs(net, "triplet", 16)


def test_resnet50_simam_adds_nothing():
    net = _resnet50_with("simam")
    assert _count(net) == RESNET50
    _runs(net, "simam", 16)


def test_resnet50_eca_with_the_papers_stage_kernels_adds_80():
    _needs("eca")
    kernels = [{"kernel_size": k} for k in (3, 5, 5, 7)]
    assert _count(_resnet50_with("eca", kernels)) - RESNET50 == 80


def test_resnet50_eca_with_the_adaptive_kernel_adds_86():
    _needs("eca")
    assert _count(_resnet50_with("eca")) - RESNET50 == 86  # k = 5, 5, 5, 7 for C = 256, 512, 1024, 2048


def test_resnet50_bam_after_stages_1_to_3_is_25_915_099():
    net = resnet50(weights=None)
    net.layer1 = nn.Sequential(net.layer1, create("bam", 256))
    net.layer2 = nn.Sequential(net.layer2, create("bam", 512))
    net.layer3 = nn.Sequential(net.layer3, create("bam", 1024))
    assert _count(net) == 25_915_099
    _runs(net, "bam", 3)


def test_mobilenet_v2_coordinate_attention_is_3_950_648():
    _needs("coord")
    net = mobilenet_v2(weights=None)
    inserted = 0
    for block in net.features[1:18]:
        if len(block.conv) == 4:  # pw-expand, dw, pw-linear, bn: the t=6 blocks; the t=1 block has none
            hidden = block.conv[1][0].out_channels
            block.conv[1] = nn.Sequential(block.conv[1], create("coord", hidden))
            inserted += 1
    assert inserted == 16
    assert _count(net) == 3_950_648
    _runs(net, "coord", 16)
