"""Channel and branch attention against independent references.

timm (SE, eSE, ECA, ECA-MLP, circular ECA, SK, split attention) and Ultralytics (ChannelAttention) with the
same weights copied in (``load_state_dict(strict=True)``, so the structures agree exactly); GCT, SRM and
FcaNet against the papers' equations transcribed here, and hand-computed parameter counts.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from attention_helpers import load_weights, n_params, randomise_
from timm.layers import CecaModule, EcaModule, EffectiveSEModule, SelectiveKernel, SEModule, SplitAttn
from torch import nn
from ultralytics.nn.modules.conv import ChannelAttention

from attnyolo import create
from attnyolo.attention._base import SafeBatchNorm2d
from attnyolo.attention.channel import _adaptive_pool_matrix, dct_basis, eca_kernel_size

# ResNet-50's bottleneck output channels, one entry per block (3, 4, 6, 3 blocks).
RESNET50_BLOCK_CHANNELS = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
RESNET50_PARAMS = 25_557_032


def inputs(channels: int, batch: int = 2, h: int = 7, w: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


def assert_same_eval(ours: nn.Module, ref: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), atol=1e-6, rtol=1e-5)


def assert_same_train_step(ours: nn.Module, ref: nn.Module, x: torch.Tensor) -> None:
    """Training-mode outputs and the BatchNorm running statistics they leave behind are equal."""
    with torch.no_grad():
        torch.testing.assert_close(ours.train()(x), ref.train()(x), atol=1e-5, rtol=1e-4)
    ref_buffers = [b for n, b in ref.named_buffers() if "running" in n]
    our_buffers = [b for n, b in ours.named_buffers() if "running" in n]
    assert len(ref_buffers) == len(our_buffers)
    for a, b in zip(our_buffers, ref_buffers, strict=True):
        torch.testing.assert_close(a, b)


# ---- SE ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [64, 256, 512, 1024, 2048])
def test_se_default_is_the_paper_bottleneck_c_over_16_with_bias(channels: int):
    m = create("se", channels)
    assert m.fc1.out_channels == channels // 16
    assert m.fc1.bias is not None and m.fc2.bias is not None
    hidden = channels // 16
    assert n_params(m) == 2 * channels * hidden + hidden + channels


@pytest.mark.parametrize("channels", [24, 64, 200])
def test_se_matches_timm_in_the_paper_setting(channels: int):
    ref = randomise_(SEModule(channels, rd_ratio=1 / 16, rd_divisor=1))
    ours = create("se", channels)
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(channels))


@pytest.mark.parametrize("channels", [24, 64, 200])
def test_se_matches_timm_default_with_rd_divisor_8(channels: int):
    ref = randomise_(SEModule(channels))
    ours = create("se", channels, rd_divisor=8)
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(channels))


def test_se_default_hidden_width_differs_from_timm_default_where_documented():
    # C=64: paper C/16 = 4, timm rounds up to its divisor 8.
    assert create("se", 64).fc1.out_channels == 4
    assert SEModule(64).fc1.out_channels == 8


@pytest.mark.parametrize(
    ("hparams", "name"),
    [
        ({"rd_ratio": 0}, "rd_ratio"),
        ({"rd_ratio": -0.5}, "rd_ratio"),
        ({"rd_channels": 0}, "rd_channels"),
        ({"rd_divisor": 0}, "rd_divisor"),
    ],
)
def test_se_bad_reduction_raises_naming_the_parameter(hparams: dict, name: str):
    with pytest.raises(ValueError, match=name):
        create("se", 64, **hparams)


# ---- eSE and Ultralytics ChannelAttention --------------------------------------------------------------


@pytest.mark.parametrize("add_maxpool", [False, True])
def test_ese_matches_timm(add_maxpool: bool):
    ref = randomise_(EffectiveSEModule(48, add_maxpool=add_maxpool))
    ours = create("ese", 48, add_maxpool=add_maxpool)
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(48))


def test_ese_gate_is_the_hard_sigmoid_of_the_paper():
    m = create("ese", 8)
    z = torch.linspace(-5, 5, 41)
    torch.testing.assert_close(m.gate(z), torch.clamp(z + 3, 0, 6) / 6)


def test_ul_channel_matches_ultralytics_channel_attention():
    ref = randomise_(ChannelAttention(40))
    ours = create("ul_channel", 40)
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(40))


def test_ul_channel_with_hard_sigmoid_is_rtmdet_and_equals_ese():
    ours = randomise_(create("ul_channel", 40, gate_layer="hard_sigmoid"))
    ese = create("ese", 40)
    load_weights(ese, ours)
    assert_same_eval(ours, ese, inputs(40))


# ---- ECA -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "k"), [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7), (8, 3), (4, 1)]
)
def test_eca_adaptive_kernel_size_hand_values(channels: int, k: int):
    # k = |log2(C)/2 + 1/2|_odd: 64 -> 3.5 -> 3; 128 -> 4 (tie) -> 5; 1024 -> 5.5 -> 5; 2048 -> 6 (tie) -> 7.
    assert eca_kernel_size(channels) == k
    assert create("eca", channels).conv.kernel_size == (k,)


def test_eca_adaptive_kernel_is_the_nearest_odd_number_rounding_ties_up():
    for c in range(1, 5000):
        t = math.log2(c) / 2 + 1 / 2
        k = eca_kernel_size(c)
        assert k % 2 == 1
        assert abs(k - t) < 1 or (abs(k - t) == 1 and k > t), (c, t, k)


@pytest.mark.parametrize("channels", [16, 64, 256, 2048])
def test_eca_matches_timm_with_adaptive_kernel(channels: int):
    ref = randomise_(EcaModule(channels))
    ours = create("eca", channels)
    assert ours.conv.kernel_size == ref.conv.kernel_size
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(channels))


@pytest.mark.parametrize("k", [1, 3, 5, 9])
def test_eca_explicit_kernel_size_matches_timm_and_is_k_weights_without_bias(k: int):
    ref = randomise_(EcaModule(None, kernel_size=k))
    ours = create("eca", 64, kernel_size=k)
    assert ours.conv.bias is None and n_params(ours) == k
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(64))


def test_eca_below_8_channels_follows_the_paper_where_timm_clamps_to_3():
    assert create("eca", 4).kernel_size == 1
    assert EcaModule(4).conv.kernel_size == (3,)


@pytest.mark.parametrize(
    ("hparams", "name"),
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": -3}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"gamma": 0}, "gamma"),
    ],
)
def test_eca_bad_hyperparameters_raise_naming_them(hparams: dict, name: str):
    with pytest.raises(ValueError, match=name):
        create("eca", 64, **hparams)


@pytest.mark.parametrize("channels", [16, 256])
def test_ecam_matches_timm_mlp_variant(channels: int):
    ref = randomise_(EcaModule(channels, use_mlp=True))
    ours = create("ecam", channels)
    assert ours.conv.out_channels == ref.conv.out_channels
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(channels))


@pytest.mark.parametrize("channels", [16, 64, 2048])
def test_ceca_matches_timm_circular_eca(channels: int):
    ref = randomise_(CecaModule(channels))
    ours = create("ceca", channels)
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(channels))


def test_ceca_explicit_kernel_matches_timm():
    ref = randomise_(CecaModule(None, kernel_size=7))
    ours = create("ceca", 32, kernel_size=7)
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(32))


def test_ceca_wraps_around_even_when_the_kernel_is_wider_than_the_channels():
    c, k = 3, 9
    m = randomise_(create("ceca", c, kernel_size=k))
    x = inputs(c)
    w, p = m.conv.weight.reshape(k), (k - 1) // 2
    mean = x.mean((2, 3))
    logits = torch.stack([sum(w[j] * mean[:, (i + j - p) % c] for j in range(k)) for i in range(c)], 1)
    with torch.no_grad():
        torch.testing.assert_close(m(x), x * torch.sigmoid(logits)[:, :, None, None])


# ---- GCT -----------------------------------------------------------------------------------------------


def gct_paper(x, alpha, gamma, beta, eps=1e-5, mode="l2"):
    """Yang et al. Eq. 1-3 as written (float64): embedding, channel normalisation, 1 + tanh gate."""
    x = x.double()
    alpha, gamma, beta = (t.double().reshape(1, -1, 1, 1) for t in (alpha, gamma, beta))
    c = x.shape[1]
    if mode == "l2":
        s = alpha * torch.sqrt((x**2).sum((2, 3), keepdim=True) + eps)
        s_hat = math.sqrt(c) * s / torch.sqrt((s**2).sum(1, keepdim=True) + eps)
    else:
        s = alpha * x.abs().sum((2, 3), keepdim=True)
        s_hat = c * s / (s.abs().sum(1, keepdim=True) + eps)
    return x * (1 + torch.tanh(gamma * s_hat + beta))


def test_gct_starts_as_the_identity():
    m = create("gct", 32).train()
    x = inputs(32)
    assert torch.equal(m(x), x)
    assert torch.equal(m.alpha, torch.ones_like(m.alpha))
    assert not m.gamma.any() and not m.beta.any()


@pytest.mark.parametrize("mode", ["l2", "l1"])
def test_gct_matches_the_paper_equations(mode: str):
    m = randomise_(create("gct", 24, mode=mode))
    x = inputs(24)
    with torch.no_grad():
        want = gct_paper(x, m.alpha, m.gamma, m.beta, mode=mode).float()
        torch.testing.assert_close(m(x), want, atol=1e-5, rtol=1e-4)


def test_gct_has_three_parameters_per_channel_and_rejects_unknown_mode():
    assert n_params(create("gct", 80)) == 3 * 80
    with pytest.raises(ValueError, match="mode"):
        create("gct", 8, mode="l3")


# ---- SRM -----------------------------------------------------------------------------------------------


def test_srm_matches_the_paper_equations_in_eval():
    c = 16
    m = randomise_(create("srm", c)).eval()
    x = inputs(c, h=6, w=5)
    w = m.cfc.weight.reshape(c, 2)
    mu, sigma = x.mean((2, 3)), x.flatten(2).std(-1)  # style pooling (unbiased std, as the authors' code)
    z = w[:, 0] * mu + w[:, 1] * sigma  # channel-wise FC
    bn = m.bn
    z_hat = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    with torch.no_grad():
        torch.testing.assert_close(m(x), x * torch.sigmoid(z_hat)[:, :, None, None], atol=1e-6, rtol=1e-5)


def test_srm_has_four_parameters_per_channel_and_starts_with_zero_cfc():
    m = create("srm", 80)
    assert n_params(m) == 2 * 80 + 2 * 80  # CFC (2 per channel) + BN affine
    assert not m.cfc.weight.any()


def test_srm_resnet50_total_is_the_paper_25_62m():
    added = sum(n_params(create("srm", c)) for c in RESNET50_BLOCK_CHANNELS)
    assert added == 4 * sum(RESNET50_BLOCK_CHANNELS) == 60_416
    assert round((RESNET50_PARAMS + added) / 1e6, 2) == 25.62


# ---- FcaNet --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("u", "v", "i", "j"), [(0, 0, 3, 4), (1, 2, 0, 6), (6, 3, 5, 2), (4, 5, 6, 0)])
def test_dct_basis_matches_the_formula_by_hand(u: int, v: int, i: int, j: int):
    n = 7
    cu = math.sqrt(1 / n) if u == 0 else math.sqrt(2 / n)
    cv = math.sqrt(1 / n) if v == 0 else math.sqrt(2 / n)
    want = cu * math.cos(math.pi * u * (i + 0.5) / n) * cv * math.cos(math.pi * v * (j + 0.5) / n)
    assert dct_basis(u, v, n, n)[i, j].item() == pytest.approx(want, abs=1e-7)


def test_dct_bases_are_orthonormal():
    bases = torch.stack([dct_basis(u, v, 7, 5).flatten() for u in range(7) for v in range(5)])
    torch.testing.assert_close(bases @ bases.T, torch.eye(35), atol=1e-6, rtol=0)


def test_fca_lowest_frequency_part_is_scaled_global_average_pooling():
    # top16 starts with (0, 0); 32 channels -> 2 channels per frequency; B^{0,0} = 1/7 everywhere.
    m = create("fca", 32)
    x = inputs(32, h=7, w=7)
    freq = (x * m.dct_weight).sum((2, 3))
    torch.testing.assert_close(freq[:, :2], 7 * x[:, :2].mean((2, 3)))
    assert m.frequencies[:4] == [(0, 0), (0, 1), (6, 0), (0, 5)]


def test_fca_frequencies_scale_with_the_dct_size_as_the_authors_code():
    assert create("fca", 32, dct_size=14).frequencies[:3] == [(0, 0), (0, 2), (12, 0)]


def test_fca_splits_uneven_channels_as_evenly_as_possible():
    m = create("fca", 20)  # 16 frequencies: the first 4 get 2 channels, the rest 1
    rows = m.dct_weight
    torch.testing.assert_close(rows[0], rows[1])
    torch.testing.assert_close(rows[6], rows[7])  # third frequency, channels 6-7 (after 0-1, 2-3, 4-5)
    torch.testing.assert_close(rows[8], dct_basis(*m.frequencies[4], 7, 7))
    torch.testing.assert_close(rows[19], dct_basis(*m.frequencies[15], 7, 7))


@pytest.mark.parametrize(("h", "w"), [(8, 6), (1, 1), (20, 13), (3, 9), (7, 7)])
def test_fca_pooling_equals_adaptive_avg_pool2d(h: int, w: int):
    m = create("fca", 16)
    x = inputs(16, h=h, w=w)
    torch.testing.assert_close(m._pool(x), F.adaptive_avg_pool2d(x, 7))
    torch.testing.assert_close(_adaptive_pool_matrix(h, 7).sum(1), torch.ones(7))


def test_fca_parameter_count_equals_bias_free_se_and_resnet50_is_the_paper_28_07m():
    for c in (64, 256, 2048):
        assert n_params(create("fca", c)) == n_params(create("se", c, bias=False)) == 2 * c * (c // 16)
    total = RESNET50_PARAMS + sum(n_params(create("fca", c)) for c in RESNET50_BLOCK_CHANNELS)
    assert total == 28_071_976
    assert round(total / 1e6, 2) == 28.07


@pytest.mark.parametrize(
    ("hparams", "name"),
    [
        ({"freq_sel": "top33"}, "freq_sel"),
        ({"freq_sel": "mid4"}, "freq_sel"),
        ({"dct_size": 5}, "dct_size"),
        ({"rd_ratio": 0}, "rd_ratio"),
    ],
)
def test_fca_bad_hyperparameters_raise_naming_them(hparams: dict, name: str):
    with pytest.raises(ValueError, match=name):
        create("fca", 32, **hparams)


# ---- SafeBatchNorm2d (used by SRM, SK, splat) ----------------------------------------------------------


def test_safe_batchnorm_is_batchnorm_with_more_than_one_value_per_channel():
    ref, ours = randomise_(nn.BatchNorm2d(6)), SafeBatchNorm2d(6)
    load_weights(ours, ref)
    assert_same_train_step(ours, ref, inputs(6, batch=2, h=1, w=1))


def test_safe_batchnorm_uses_running_stats_for_a_single_value_and_leaves_them_unchanged():
    bn = randomise_(SafeBatchNorm2d(6)).train()
    before = bn.running_mean.clone(), bn.running_var.clone()
    x = inputs(6, batch=1, h=1, w=1)
    want = (x - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    want = want * bn.weight[:, None, None] + bn.bias[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(bn(x), want)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    with pytest.raises(ValueError):  # what nn.BatchNorm2d does instead
        nn.BatchNorm2d(6).train()(x)


# ---- SK ------------------------------------------------------------------------------------------------

SK_RENAME = {"attn": ""}


def test_sk_default_is_the_paper_setting():
    m = create("sk", 64)
    assert [p.conv.kernel_size for p in m.paths] == [(3, 3), (3, 3)]
    assert [p.conv.dilation for p in m.paths] == [(1, 1), (2, 2)]  # the 5x5 as a dilated 3x3
    assert all(p.conv.groups == 32 and p.conv.in_channels == 64 for p in m.paths)
    assert m.fc_reduce.out_channels == 32  # d = max(C/r, L) = max(4, 32)
    assert create("sk", 1024).fc_reduce.out_channels == 64


def test_sk_matches_timm_in_the_paper_setting():
    ref = randomise_(SelectiveKernel(64, groups=32, split_input=False, rd_channels=32))
    ours = create("sk", 64)
    load_weights(ours, ref, SK_RENAME)
    x = inputs(64)
    assert_same_eval(ours, ref, x)
    assert_same_train_step(ours, ref, x)


def test_sk_matches_timm_default_with_timm_settings():
    ref = randomise_(SelectiveKernel(64))  # groups 1, input split, d = make_divisible(64/16, 8) = 8
    ours = create("sk", 64, groups=1, split_input=True, rd_channels=ref.attn.fc_reduce.out_channels)
    load_weights(ours, ref, SK_RENAME)
    x = inputs(64, h=6, w=6)
    assert_same_eval(ours, ref, x)
    assert_same_train_step(ours, ref, x)


def test_sk_trains_at_batch_one_where_timm_raises():
    ref = randomise_(SelectiveKernel(64, groups=32, split_input=False, rd_channels=32)).train()
    ours = create("sk", 64).train()
    load_weights(ours, ref, SK_RENAME)
    x = inputs(64, batch=1)
    with pytest.raises(ValueError, match="more than 1 value"):
        ref(x)
    before = ours.bn.running_var.clone()
    y = ours(x)
    y.sum().backward()
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.equal(ours.bn.running_var, before)  # the pooled BN used, not updated, its statistics


@pytest.mark.parametrize(
    ("channels", "hparams", "name"),
    [
        (64, {"kernel_sizes": (3, 4)}, "kernel_sizes"),
        (64, {"kernel_sizes": (3,)}, "kernel_sizes"),
        (48, {}, "channels"),
        (64, {"rd_ratio": 0}, "rd_ratio"),
        (64, {"groups": 0}, "groups"),
        (96, {"split_input": True}, "channels"),
    ],
)
def test_sk_bad_hyperparameters_raise_naming_them(channels: int, hparams: dict, name: str):
    with pytest.raises(ValueError, match=name):
        create("sk", channels, **hparams)


# ---- split attention -----------------------------------------------------------------------------------


def test_splat_default_hidden_width_is_resnest_max_c_radix_over_4_and_32():
    assert create("splat", 64).fc1.out_channels == 32
    assert create("splat", 256).fc1.out_channels == 128
    assert create("splat", 16).fc1.out_channels == 32


def test_splat_matches_timm_with_batchnorm_as_resnest():
    ref = randomise_(SplitAttn(64, norm_layer=nn.BatchNorm2d))
    ours = create("splat", 64)
    load_weights(ours, ref)
    x = inputs(64)
    assert_same_eval(ours, ref, x)
    assert_same_train_step(ours, ref, x)


def test_splat_without_batchnorm_matches_timm_default():
    ref = randomise_(SplitAttn(64))
    ours = create("splat", 64, use_bn=False)
    load_weights(ours, ref)
    assert_same_eval(ours, ref, inputs(64))


@pytest.mark.parametrize(("radix", "groups"), [(1, 1), (2, 2), (4, 1)])
def test_splat_matches_timm_for_other_radix_and_cardinality(radix: int, groups: int):
    ref = randomise_(SplitAttn(64, radix=radix, groups=groups, norm_layer=nn.BatchNorm2d))
    ours = create("splat", 64, radix=radix, groups=groups)
    load_weights(ours, ref)
    x = inputs(64)
    assert_same_eval(ours, ref, x)
    assert_same_train_step(ours, ref, x)


def test_splat_trains_at_batch_one_where_timm_with_batchnorm_raises():
    ref = randomise_(SplitAttn(64, norm_layer=nn.BatchNorm2d)).train()
    ours = create("splat", 64).train()
    load_weights(ours, ref)
    x = inputs(64, batch=1)
    with pytest.raises(ValueError, match="more than 1 value"):
        ref(x)
    y = ours(x)
    y.sum().backward()
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("channels", "hparams", "name"),
    [
        (3, {}, "channels"),
        (64, {"radix": 0}, "radix"),
        (64, {"kernel_size": 4}, "kernel_size"),
        (64, {"groups": 3}, "channels"),
        (64, {"rd_ratio": 0}, "rd_ratio"),
    ],
)
def test_splat_bad_hyperparameters_raise_naming_them(channels: int, hparams: dict, name: str):
    with pytest.raises(ValueError, match=name):
        create("splat", channels, **hparams)
