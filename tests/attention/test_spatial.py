"""Spatial and channel-spatial modules against timm and Ultralytics with copied weights, against the
official code's conventions (triplet's rotations, scSE's max fusion, BAM's product) and against hand
computations (SimAM's energy, CBAM's spatial map on a constant input)."""

from __future__ import annotations

import math

import pytest
import torch
from attention_helpers import assert_same_output, capture, load_weights, n_params, randomise_
from timm.layers import create_attn
from timm.layers.cbam import CbamModule, LightCbamModule, SpatialAttn
from timm.layers.coord_attn import StripAttn
from timm.layers.gather_excite import GatherExcite
from timm.layers.global_context import GlobalContext
from timm.layers.mlp import ConvMlp
from torch import nn
from ultralytics.nn.modules.conv import CBAM as UltralyticsCBAM
from ultralytics.nn.modules.conv import SpatialAttention as UltralyticsSpatialAttention

from attnyolo.attention._base import SafeBatchNorm2d
from attnyolo.registry import create, describe

# ---- sam / ul_spatial -------------------------------------------------------------------------------


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("kernel_size", [3, 7])
def test_sam_matches_timm_spatial_attn(kernel_size, train):
    ref = SpatialAttn(kernel_size)
    ours = create("sam", 16, kernel_size=kernel_size)
    randomise_(ref)
    load_weights(ours, ref, {"conv.conv": "conv", "conv.bn": "bn"})
    assert_same_output(ours, ref, torch.randn(2, 16, 9, 6), train=train)


def test_sam_on_constant_input_follows_the_padded_conv_by_hand():
    # x = c everywhere, so mean_c = max_c = c; with every conv weight w the logit at a pixel is
    # c * w * (2 maps) * (number of kernel taps inside the zero-padded image).
    c, w, k = 0.5, 0.1, 3
    m = create("sam", 4, kernel_size=k, use_bn=False).eval()
    nn.init.constant_(m.conv.weight, w)
    y = m(torch.full((1, 4, 5, 5), c))
    centre = c * (1 / (1 + math.exp(-(c * w * 2 * k * k))))
    corner = c * (1 / (1 + math.exp(-(c * w * 2 * 4))))  # 2x2 taps inside at a corner
    edge = c * (1 / (1 + math.exp(-(c * w * 2 * 6))))  # 2x3 taps inside on an edge
    assert y[0, :, 2, 2].tolist() == pytest.approx([centre] * 4, rel=1e-6)
    assert y[0, :, 0, 0].tolist() == pytest.approx([corner] * 4, rel=1e-6)
    assert y[0, :, 0, 2].tolist() == pytest.approx([edge] * 4, rel=1e-6)


def test_sam_has_the_hundred_parameters_the_cbam_count_implies():
    assert n_params(create("sam", 64)) == 2 * 7 * 7 + 2  # conv, no bias + BN(1)


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_ul_spatial_loads_ultralytics_state_dict_and_matches(kernel_size):
    ref = UltralyticsSpatialAttention(kernel_size)
    ours = create("ul_spatial", 16, kernel_size=kernel_size)
    randomise_(ref)
    load_weights(ours, ref)  # same keys: cv1.weight
    assert_same_output(ours, ref, torch.randn(2, 16, 7, 10))


# ---- ge ---------------------------------------------------------------------------------------------


def test_ge_builds_with_timms_defaults_where_timm_cannot():
    ours = create("ge", 32)
    assert isinstance(ours.mlp, nn.Sequential) and ours.mlp[0].out_channels == 2  # 32 / 16
    try:
        ref = GatherExcite(32)  # timm 1.0.x: TypeError from ConvMlp(..., *dd)
    except TypeError:
        return
    randomise_(ref)  # a timm that builds it must then give the same outputs
    load_weights(ours, ref, {"mlp.fc1": "mlp.0", "mlp.fc2": "mlp.2"})
    assert_same_output(ours, ref, torch.randn(2, 32, 5, 5))


@pytest.mark.parametrize("extent", [0, 2, 4])
def test_ge_parameter_free_matches_timm(extent):
    ref = GatherExcite(16, extent=extent, use_mlp=False)
    ours = create("ge", 16, extent=extent, use_mlp=False)
    assert n_params(ours) == 0
    assert_same_output(ours, ref, torch.randn(2, 16, 11, 8))


@pytest.mark.parametrize("extent", [0, 4])
def test_ge_with_mlp_matches_timm_given_the_mlp_its_constructor_means_to_build(extent):
    # timm cannot construct use_mlp=True; build it without, then attach the ConvMlp its line 84 intends.
    ref = GatherExcite(32, extent=extent, use_mlp=False)
    ref.mlp = ConvMlp(32, 2, act_layer=nn.ReLU)
    ours = create("ge", 32, extent=extent)
    randomise_(ref)
    load_weights(ours, ref, {"mlp.fc1": "mlp.0", "mlp.fc2": "mlp.2"})
    assert_same_output(ours, ref, torch.randn(2, 32, 9, 12))


def test_ge_global_equals_hand_formula():
    x = torch.randn(2, 8, 5, 3)
    y = create("ge", 8, use_mlp=False)(x)
    torch.testing.assert_close(y, x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True)))


def test_ge_extra_params_gather_is_log2_extent_depthwise_convs_with_bn():
    m = create("ge", 16, extent=4, extra_params=True, use_mlp=False)
    convs = [l for l in m.gather if isinstance(l, nn.Conv2d)]
    assert [(c.groups, c.stride, c.kernel_size) for c in convs] == [(16, (2, 2), (3, 3))] * 2
    assert n_params(m) == 2 * (16 * 9 + 2 * 16)


# ---- gc / gca ---------------------------------------------------------------------------------------


def _timm_ln_eps_as_official(ref: GlobalContext) -> None:
    # timm's LayerNorm2d uses eps=1e-6; the official GCNet code (and ours) nn.LayerNorm's 1e-5.
    for mlp in (ref.mlp_add, ref.mlp_scale):
        if mlp is not None:
            mlp.norm.eps = 1e-5


@pytest.mark.parametrize("name", ["gc", "gca"])
def test_gc_names_match_timms_create_attn_with_copied_weights(name):
    ref = create_attn(name, 64)  # timm: rd_ratio 1/8
    _timm_ln_eps_as_official(ref)
    ours = create(name, 64, rd_ratio=1 / 8)
    randomise_(ref)
    load_weights(ours, ref)  # same keys: conv_attn, mlp_add / mlp_scale .fc1 .norm .fc2
    assert_same_output(ours, ref, torch.randn(2, 64, 7, 9))


def test_gc_default_bottleneck_is_the_papers_r16_not_timms_r8():
    assert create("gc", 256).mlp_scale.fc1.out_channels == 16
    assert create("gca", 256).mlp_add.fc1.out_channels == 16
    assert create_attn("gc", 256).mlp_scale.fc1.out_channels == 32


@pytest.mark.parametrize(
    "variant", [{"use_attn": False}, {"fuse_add": True, "fuse_scale": True}], ids=["average-pooling", "both-fusions"]
)
def test_gc_variant_matches_timm_configured_the_same(variant):
    ref = GlobalContext(32, rd_ratio=1 / 16, **variant)
    _timm_ln_eps_as_official(ref)
    ours = create("gc", 32, **variant)
    randomise_(ref)
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(2, 32, 6, 5))


def test_gca_starts_as_identity_because_the_last_conv_is_zero_initialised():
    x = torch.randn(2, 32, 6, 5)
    torch.testing.assert_close(create("gca", 32)(x), x)


def test_gc_attention_weights_are_a_softmax_over_positions():
    _, weights = capture(create("gca", 16).eval(), torch.randn(3, 16, 4, 6))
    assert weights.shape == (3, 1, 4, 6)
    torch.testing.assert_close(weights.sum(dim=(2, 3)), torch.ones(3, 1))


# ---- strip ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs", [{}, {"kernel_size": 5}, {"use_conv": False}, {"bias": True, "has_skip": True}], ids=str
)
def test_strip_matches_timm_strip_attn(kwargs):
    ref = StripAttn(24, **kwargs)
    ours = create("strip", 24, **kwargs)
    randomise_(ref)
    load_weights(ours, ref)  # same keys: conv_h, conv_w
    assert_same_output(ours, ref, torch.randn(2, 24, 8, 11))


def test_strip_is_timms_strip_under_the_same_name():
    assert type(create_attn("strip", 8)) is StripAttn
    assert describe("strip").reference == "timm:strip"


# ---- cbam / lcbam / ul_cbam -------------------------------------------------------------------------

_CBAM_KEYS = {"channel.fc1": "mlp.fc1", "channel.fc2": "mlp.fc2", "spatial.conv.conv": "spatial.0"}
_CBAM_KEYS["spatial.conv.bn"] = "spatial.1"


@pytest.mark.parametrize("train", [False, True])
def test_cbam_timm_setting_matches_timm_cbam_module(train):
    ref = CbamModule(64)  # timm default: mlp_bias=False
    ours = create("cbam", 64, mlp_bias=False)
    randomise_(ref)
    load_weights(ours, ref, _CBAM_KEYS)
    assert_same_output(ours, ref, torch.randn(2, 64, 7, 6), train=train)


@pytest.mark.parametrize("train", [False, True])
def test_cbam_paper_default_with_mlp_bias_matches_timm_with_bias(train):
    ref = CbamModule(64, mlp_bias=True)
    ours = create("cbam", 64)
    assert ours.mlp.fc1.bias is not None  # the paper's MLP has biases; timm's default does not
    randomise_(ref)
    load_weights(ours, ref, _CBAM_KEYS)
    assert_same_output(ours, ref, torch.randn(2, 64, 7, 6), train=train)


@pytest.mark.parametrize("train", [False, True])
def test_lcbam_matches_timm_light_cbam(train):
    ref = LightCbamModule(48)
    ours = create("lcbam", 48)
    randomise_(ref)
    load_weights(ours, ref, _CBAM_KEYS)
    assert_same_output(ours, ref, torch.randn(2, 48, 5, 9), train=train)


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_ul_cbam_loads_ultralytics_state_dict_and_matches(kernel_size):
    ref = UltralyticsCBAM(32, kernel_size)
    ours = create("ul_cbam", 32, kernel_size=kernel_size)
    randomise_(ref)
    load_weights(ours, ref)  # same keys: channel_attention.fc, spatial_attention.cv1
    assert_same_output(ours, ref, torch.randn(2, 32, 6, 8))


def test_cbam_gate_hook_sees_the_spatial_map_and_channel_gate_the_channel_weights():
    m = create("cbam", 32).eval()
    shapes = []
    m.gate.register_forward_hook(lambda mod, inp, out: shapes.append(("gate", tuple(out.shape))))
    m.channel_gate.register_forward_hook(lambda mod, inp, out: shapes.append(("channel", tuple(out.shape))))
    m(torch.randn(2, 32, 5, 4))
    assert shapes == [("channel", (2, 32, 1, 1)), ("gate", (2, 1, 5, 4))]


# ---- bam --------------------------------------------------------------------------------------------


def _bam_with_constant_branches(fuse: str, channel_bias: torch.Tensor, spatial_bias: float) -> nn.Module:
    """BAM whose last layers ignore their input, so Mc = channel_bias and Ms = spatial_bias."""
    m = create("bam", channel_bias.numel(), fuse=fuse).eval()
    last_c, last_s = m.channel_att[-1], m.spatial_att[-1]
    nn.init.zeros_(last_c.weight)
    nn.init.zeros_(last_s.weight)
    last_c.bias.data = channel_bias.clone()
    nn.init.constant_(last_s.bias, spatial_bias)
    return m


@pytest.mark.parametrize("fuse", ["add", "mul"])
def test_bam_output_is_f_plus_f_times_sigmoid_of_fused_branches(fuse):
    bc, bs = torch.linspace(-2, 2, 16), 0.7
    m = _bam_with_constant_branches(fuse, bc, bs)
    x = torch.randn(2, 16, 5, 6)
    fused = bc + bs if fuse == "add" else bc * bs  # paper: sum; official code: product
    expected = x + x * torch.sigmoid(fused).view(1, 16, 1, 1)
    torch.testing.assert_close(m(x), expected)


def test_bam_branch_structure_is_the_official_one():
    m = create("bam", 256)
    dilated = [l for l in m.spatial_att if isinstance(l, nn.Conv2d) and l.kernel_size == (3, 3)]
    assert [(c.dilation, c.padding, c.in_channels) for c in dilated] == [((4, 4), (4, 4), 16)] * 2
    assert m.channel_att[0].out_channels == 16 and isinstance(m.channel_att[1], nn.BatchNorm2d)
    assert m.spatial_att[-1].out_channels == 1


def test_bam_trains_at_batch_1_with_running_stats_in_the_pooled_branch():
    torch.manual_seed(0)
    m = create("bam", 32).train()
    channel_bn, spatial_bn = m.channel_att[1], m.spatial_att[1]
    y = m(torch.randn(1, 32, 6, 6))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(channel_bn.running_mean, torch.zeros(2))  # one value per channel: not updated
    assert spatial_bn.running_mean.abs().sum() > 0  # 36 values per channel: normal BN training
    assert describe("bam").batch1_train


def test_batchnorm_any_batch_uses_running_stats_only_for_a_single_value_per_channel():
    ours, ref = SafeBatchNorm2d(3), nn.BatchNorm2d(3)
    randomise_(ref)
    ours.load_state_dict(ref.state_dict())
    one = torch.randn(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ours.train()(one), ref.eval()(one))
        many = torch.randn(4, 3, 2, 2)
        torch.testing.assert_close(ours.train()(many), ref.train()(many))


# ---- scse -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fuse", ["add", "max"])
def test_scse_combines_cse_and_sse_outputs_as_the_paper_or_official_code(fuse):
    m = create("scse", 8, fuse=fuse).eval()
    bc, bs = torch.linspace(-1, 1, 8), -0.3
    nn.init.zeros_(m.cse.fc2.weight)
    m.cse.fc2.bias.data = bc.clone()
    nn.init.zeros_(m.sse.weight)
    nn.init.constant_(m.sse.bias, bs)
    x = torch.randn(2, 8, 4, 5)
    cse = x * torch.sigmoid(bc).view(1, 8, 1, 1)
    sse = x * torch.sigmoid(torch.tensor(bs))
    expected = cse + sse if fuse == "add" else torch.maximum(cse, sse)  # official: torch.max(cSE(x), sSE(x))
    torch.testing.assert_close(m(x), expected)


def test_scse_default_reduction_is_the_papers_two():
    m = create("scse", 64)
    assert m.cse.fc1.out_channels == 32 and m.cse.fc1.bias is not None
    assert m.sse.out_channels == 1 and m.sse.kernel_size == (1, 1)


# ---- triplet ----------------------------------------------------------------------------------------


def _official_triplet(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The official code's computation: rotate the tensor, Z-pool dim 1 as [max; mean], conv+BN, sigmoid,
    multiply, rotate back, average the branches."""

    def branch(conv: nn.Module, t: torch.Tensor) -> torch.Tensor:
        z = torch.cat([t.max(dim=1, keepdim=True)[0], t.mean(dim=1, keepdim=True)], dim=1)
        return t * torch.sigmoid(conv(z))

    out_cw = branch(m.cw, x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3)
    out_hc = branch(m.hc, x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1)
    if m.hw is None:
        return 0.5 * (out_cw + out_hc)
    return (1 / 3) * (branch(m.hw, x) + out_cw + out_hc)


@pytest.mark.parametrize("no_spatial", [False, True])
@pytest.mark.parametrize("train", [False, True])
def test_triplet_matches_the_official_rotate_and_pool_computation(train, no_spatial):
    m = create("triplet", 6, no_spatial=no_spatial)
    randomise_(m)
    m.train(train)
    x = torch.randn(2, 6, 9, 5)  # C, H, W all different, so a wrong rotation cannot go unnoticed
    with torch.no_grad():
        torch.testing.assert_close(m(x), _official_triplet(m, x), rtol=1e-5, atol=1e-5)


def test_triplet_has_300_parameters_per_block():
    # 3 branches x (2 x 7 x 7 conv weights, no bias + BN weight and bias)
    assert n_params(create("triplet", 1024)) == 3 * (2 * 49 + 2)


# ---- simam ------------------------------------------------------------------------------------------


def test_simam_follows_the_energy_formula_by_hand():
    values = [1.0, 2.0, 3.0, 4.0]
    lam = 1e-4
    mu = sum(values) / 4
    var = sum((v - mu) ** 2 for v in values) / (4 - 1)  # n = H*W - 1
    expected = [v / (1 + math.exp(-((v - mu) ** 2 / (4 * (var + lam)) + 0.5))) for v in values]
    x = torch.tensor(values).view(1, 1, 2, 2)
    assert create("simam", 1)(x).flatten().tolist() == pytest.approx(expected, rel=1e-6)


def test_simam_channels_are_independent_and_lambda_is_used():
    x = torch.randn(2, 3, 4, 4)
    y = create("simam", 3)(x)
    torch.testing.assert_close(y[:, 1:2], create("simam", 1)(x[:, 1:2]))
    assert not torch.allclose(create("simam", 3, e_lambda=10.0)(x), y)


def test_simam_on_a_single_pixel_gives_sigmoid_half_instead_of_nan():
    x = torch.randn(2, 4, 1, 1)
    torch.testing.assert_close(create("simam", 4)(x), x * torch.sigmoid(torch.tensor(0.5)))


def test_simam_has_no_parameters():
    assert n_params(create("simam", 512)) == 0


# ---- gam --------------------------------------------------------------------------------------------


def test_gam_param_count_is_the_papers_structure():
    c, r = 64, 16  # r = C / 4
    mlp = (c * r + r) + (r * c + c)
    spatial = (c * r * 49 + r) + 2 * r + (r * c * 49 + c) + 2 * c
    assert n_params(create("gam", c)) == mlp + spatial


def test_gam_applies_channel_then_spatial_gates_per_position():
    m = create("gam", 8).eval()
    nn.init.zeros_(m.channel_mlp[-1].weight)
    m.channel_mlp[-1].bias.data = torch.linspace(-1, 1, 8)
    last_bn = m.spatial[-1]
    nn.init.zeros_(last_bn.weight)  # spatial logits = BN bias, whatever the input
    last_bn.bias.data = torch.linspace(2, -2, 8)
    x = torch.randn(2, 8, 3, 4)
    expected = x * torch.sigmoid(torch.linspace(-1, 1, 8)).view(1, 8, 1, 1)
    expected = expected * torch.sigmoid(torch.linspace(2, -2, 8)).view(1, 8, 1, 1)
    torch.testing.assert_close(m(x), expected)


def test_gam_channel_mlp_mixes_channels_at_each_position_without_pooling():
    m = create("gam", 8).eval()
    x = torch.randn(1, 8, 3, 4)
    _, channel_weights = capture(m, x, "channel_gate")
    assert channel_weights.shape == (1, 8, 3, 4)  # a weight per channel and position
    one = x[:, :, 1, 2]  # the MLP of one position's channel vector
    torch.testing.assert_close(channel_weights[:, :, 1, 2], torch.sigmoid(m.channel_mlp(one)))


# ---- bad hyper-parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "param"),
    [
        ("sam", {"kernel_size": 4}, "kernel_size"),
        ("sam", {"kernel_size": -3}, "kernel_size"),
        ("ul_spatial", {"kernel_size": 5}, "kernel_size"),
        ("ul_cbam", {"kernel_size": 5}, "kernel_size"),
        ("ge", {"extent": 3}, "extent"),
        ("ge", {"extent": -2}, "extent"),
        ("ge", {"rd_ratio": 0}, "rd_ratio"),
        ("ge", {"extra_params": True}, "extra_params"),
        ("gc", {"rd_ratio": 0}, "rd_ratio"),
        ("gca", {"fuse_add": False}, "fuse_add"),
        ("strip", {"kernel_size": 2}, "kernel_size"),
        ("cbam", {"rd_ratio": 0}, "rd_ratio"),
        ("cbam", {"rd_channels": 0}, "rd_channels"),
        ("cbam", {"spatial_kernel_size": 6}, "spatial_kernel_size"),
        ("lcbam", {"rd_ratio": -0.5}, "rd_ratio"),
        ("bam", {"dilation": 0}, "dilation"),
        ("bam", {"num_dilated": -1}, "num_dilated"),
        ("bam", {"fuse": "concat"}, "fuse"),
        ("scse", {"fuse": "mul"}, "fuse"),
        ("scse", {"rd_ratio": 0}, "rd_ratio"),
        ("triplet", {"kernel_size": 0}, "kernel_size"),
        ("simam", {"e_lambda": 0}, "e_lambda"),
        ("simam", {"e_lambda": -1e-4}, "e_lambda"),
        ("gam", {"rd_ratio": 0}, "rd_ratio"),
        ("gam", {"kernel_size": 8}, "kernel_size"),
    ],
)
def test_bad_hyper_parameter_raises_value_error_naming_it(name, kwargs, param):
    with pytest.raises(ValueError, match=param):
        create(name, 16, **kwargs)


_MINE = ["sam", "ul_spatial", "ge", "gc", "gca", "strip", "cbam", "lcbam", "ul_cbam", "bam", "scse"]
_MINE += ["triplet", "simam", "gam"]


@pytest.mark.parametrize("name", _MINE)
def test_zero_channels_raise_value_error_naming_channels(name):
    with pytest.raises(ValueError, match="channels"):
        create(name, 0)
