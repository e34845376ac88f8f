"""FLOPs counted op by op (parameter-free ones included) against hand counts; latency as an interleaved ratio."""

from __future__ import annotations

import pytest
import torch

import attnyolo
from attnyolo.experiments.costs import count_flops, count_params, interleaved_latency

C, H, W = 64, 20, 12  # non-square on purpose
HW = H * W


def _hidden(c: int) -> int:
    return max(1, round(c / 16))  # the paper's C / r, r = 16


def test_se_flops_match_a_hand_count():
    rd = _hidden(C)
    hand = (
        C * HW  # squeeze: sum over H x W
        + C  # ... divided by H * W
        + 2 * C * rd + rd  # fc1 (1x1 conv) + bias
        + rd  # ReLU
        + 2 * rd * C + C  # fc2 + bias
        + C  # sigmoid gate
        + C * HW  # scale: x * gate
    )  # fmt: skip
    got = count_flops(attnyolo.create("se", C), torch.randn(1, C, H, W))
    assert abs(got.total - hand) <= 0.01 * hand and not got.uncounted


def test_cbam_flops_match_a_hand_count():
    rd, k = _hidden(C), 7
    mlp = 2 * C * rd + rd + rd + 2 * rd * C + C  # fc1 + bias, ReLU, fc2 + bias
    channel = (C * HW + C) + C * HW + 2 * mlp + C + C + C * HW  # avg pool, max pool, 2 MLPs, add, sigmoid, scale
    spatial = (
        (C * HW + HW)  # mean over channels (sum, divide)
        + C * HW  # max over channels
        + 2 * HW * 2 * k * k  # 7x7 conv, 2 maps -> 1, no bias
        + 2 * HW  # batch norm (inference): scale and shift
        + HW  # sigmoid
        + C * HW  # scale
    )
    hand = channel + spatial
    got = count_flops(attnyolo.create("cbam", C), torch.randn(1, C, H, W))
    assert abs(got.total - hand) <= 0.01 * hand, (got.total, hand, dict(got.by_op))
    assert not got.uncounted


def test_simam_model_counts_more_than_the_baseline_though_it_has_no_parameters():
    base = attnyolo.build("yolov8n.yaml", nc=3)
    cfg, _ = attnyolo.insert("yolov8n.yaml", "simam", "neck")
    simam = attnyolo.build(cfg, nc=3)
    x = torch.zeros(1, 3, 64, 64)
    fb, fs = count_flops(base, x), count_flops(simam, x)
    # identity-start wrapper has one gamma per layer; SimAM itself has none
    assert count_params(simam) - count_params(base) == 3
    assert fs.total > fb.total
    # SimAM's own ops on each neck output (C x H x W): at least its element-wise energy terms, several per element
    neck_elems = sum(c * (64 // s) ** 2 for c, s in ((64, 8), (128, 16), (256, 32)))
    assert fs.total - fb.total >= 5 * neck_elems
    assert not fs.uncounted and not fb.uncounted


def test_convolution_flops_follow_the_textbook_formula():
    conv = torch.nn.Conv2d(8, 16, 3, padding=1, groups=2, bias=True)
    got = count_flops(conv, torch.randn(2, 8, 10, 9)).total
    out = 2 * 16 * 10 * 9
    assert got == 2 * out * (8 // 2) * 9 + out


def test_latency_ratio_sees_a_slower_model():
    fast = torch.nn.Conv2d(3, 8, 3)
    slow = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(12)], torch.nn.Conv2d(3, 8, 3))
    lat = interleaved_latency(slow, fast, imgsz=64, rounds=15, warmup=2)
    assert lat.ratio > 1.5 and lat.ms > lat.baseline_ms and lat.rounds == 15


@pytest.mark.parametrize("name", ["eca", "coord"])
def test_other_neck_attentions_have_no_uncounted_op(name):
    got = count_flops(attnyolo.create(name, C), torch.randn(1, C, H, W))
    assert got.total > 2 * C * HW and not got.uncounted
