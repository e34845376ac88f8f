"""Coordinate-style modules (coord, scoord, ela) against timm with copied weights, the official CA code's
width rule and a loop-by-loop re-statement of ELA's listing."""

from __future__ import annotations

import math

import pytest
import torch
from attention_helpers import assert_output_is_input_times_gate, assert_same_output, n_params, randomise_
from timm.layers.coord_attn import CoordAttn, EfficientLocalAttn, SimpleCoordAttn
from torch import nn

from attnyolo.registry import create

# ---- coord: Coordinate Attention ------------------------------------------------------------------


@pytest.mark.parametrize("channels", [8, 16, 96, 144, 272, 576, 960, 1000])
def test_coord_hidden_width_is_official_max_8_c_floordiv_32(channels):
    m = create("coord", channels)
    assert m.conv1.out_channels == max(8, channels // 32)


def test_coord_default_param_count_has_conv_biases_and_batchnorm():
    c, mip = 320, 10  # official: mip = max(8, 320 // 32), every 1x1 conv with bias
    expected = (c * mip + mip) + 2 * mip + 2 * (mip * c + c)
    assert n_params(create("coord", c)) == expected


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("channels", [64, 320])
def test_coord_matches_timm_configured_as_the_official_code(channels, train):
    ref = CoordAttn(channels, rd_channels=max(8, channels // 32), bias=True)  # timm's act is nn.Hardswish = h_swish
    ours = create("coord", channels)
    randomise_(ref)
    ours.load_state_dict(ref.state_dict())
    assert_same_output(ours, ref, torch.randn(2, channels, 7, 5), train=train)


@pytest.mark.parametrize("train", [False, True])
def test_coord_matches_timm_defaults_with_its_width_and_no_bias(train):
    channels = 96
    ref = CoordAttn(channels)  # timm: width make_divisible(96 / 16 * 2 / 3, 8) = 8, bias=False
    ours = create("coord", channels, rd_channels=ref.conv1.out_channels, bias=False)
    randomise_(ref)
    ours.load_state_dict(ref.state_dict())
    assert_same_output(ours, ref, torch.randn(2, channels, 6, 9), train=train)


def test_coord_gate_sees_the_product_of_both_strip_weights():
    assert_output_is_input_times_gate(create("coord", 32).eval(), torch.randn(2, 32, 5, 7))


@pytest.mark.parametrize(("kwargs", "name"), [({"rd_ratio": 0}, "rd_ratio"), ({"rd_min": 0}, "rd_min")])
def test_coord_bad_reduction_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        create("coord", 64, **kwargs)


# ---- scoord: timm's SimpleCoordAttn ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours_kw", "ref_kw"),
    [
        ({}, {}),
        ({"rd_ratio": 0.5, "act_layer": "relu", "bias": False}, {"rd_ratio": 0.5, "act_layer": nn.ReLU, "bias": False}),
    ],
    ids=["timm-defaults", "custom"],
)
def test_scoord_matches_timm_simple_coord_attn(ours_kw, ref_kw):
    channels = 48
    ref = SimpleCoordAttn(channels, **ref_kw)
    ours = create("scoord", channels, **ours_kw)
    randomise_(ref)
    ours.load_state_dict(ref.state_dict())
    assert_same_output(ours, ref, torch.randn(2, channels, 5, 8), train=True)


def test_scoord_bad_rd_ratio_names_the_parameter():
    with pytest.raises(ValueError, match="rd_ratio"):
        create("scoord", 64, rd_ratio=0)


# ---- ela: Efficient Local Attention ---------------------------------------------------------------


def _timm_ela_to_ours(ref: EfficientLocalAttn) -> dict[str, torch.Tensor]:
    """timm's per-axis (k, 1)/(1, k) Conv2d kernels are the same 1D kernels as ours."""
    sd = ref.state_dict()
    out = {"convs.0.weight": sd["conv_h.weight"].squeeze(3), "convs.1.weight": sd["conv_w.weight"].squeeze(2)}
    for i, axis in enumerate("hw"):
        for k in ("weight", "bias"):
            out[f"norms.{i}.{k}"] = sd[f"norm_{axis}.{k}"]
        if f"conv_{axis}.bias" in sd:
            out[f"convs.{i}.bias"] = sd[f"conv_{axis}.bias"]
    return out


@pytest.mark.parametrize(("kernel_size", "bias"), [(7, False), (5, True)])
def test_ela_matches_timm_efficient_local_attn_in_its_configuration(kernel_size, bias):
    channels = 32
    ref = EfficientLocalAttn(channels, kernel_size=kernel_size, bias=bias)
    ours = create("ela", channels, kernel_size=kernel_size, bias=bias, shared=False, norm_groups=1, act_layer="silu")
    randomise_(ref)
    ours.load_state_dict(_timm_ela_to_ours(ref))
    assert_same_output(ours, ref, torch.randn(2, channels, 9, 6), train=True)


def _ela_listing_by_loops(x, weight, gamma, beta, groups=16, eps=1e-5):
    """The paper's listing re-stated with explicit loops: one depthwise 1D conv and one GroupNorm for both strips."""
    b, c, h, w = x.shape
    k = weight.shape[-1]

    def encode(strip):  # strip: (C, L) for one image
        length = strip.shape[1]
        conv = torch.zeros_like(strip)
        for ch in range(c):
            for i in range(length):
                for t in range(k):
                    j = i + t - k // 2
                    if 0 <= j < length:
                        conv[ch, i] += weight[ch, 0, t] * strip[ch, j]
        out = torch.empty_like(conv)
        per = c // groups
        for g in range(groups):
            block = conv[g * per : (g + 1) * per]
            mu, var = block.mean(), ((block - block.mean()) ** 2).mean()
            out[g * per : (g + 1) * per] = (block - mu) / math.sqrt(var + eps)
        return torch.sigmoid(out * gamma[:, None] + beta[:, None])

    y = torch.empty_like(x)
    for n in range(b):
        a_h = encode(x[n].mean(2))  # (C, H)
        a_w = encode(x[n].mean(1))  # (C, W)
        y[n] = x[n] * a_h[:, :, None] * a_w[:, None, :]
    return y


def test_ela_default_follows_the_papers_shared_conv_and_groupnorm16():
    channels = 32
    m = create("ela", channels)
    randomise_(m)
    x = torch.randn(2, channels, 5, 4)
    with torch.no_grad():
        expected = _ela_listing_by_loops(x, m.convs[0].weight, m.norms[0].weight, m.norms[0].bias)
        torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)


def test_ela_default_param_count_is_depthwise_kernel_plus_one_groupnorm():
    channels = 64
    assert n_params(create("ela", channels)) == channels * 7 + 2 * channels


@pytest.mark.parametrize(
    ("channels", "kwargs", "name"),
    [(32, {"kernel_size": 4}, "kernel_size"), (24, {}, "channels"), (32, {"conv_groups": 3}, "channels")],
)
def test_ela_bad_hyper_parameters_name_the_parameter(channels, kwargs, name):
    with pytest.raises(ValueError, match=name):
        create("ela", channels, **kwargs)


def test_ela_gate_sees_the_full_weight_map():
    assert_output_is_input_times_gate(create("ela", 16).eval(), torch.randn(1, 16, 6, 3))
