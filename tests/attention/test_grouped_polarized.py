"""Group-wise (sge, sa, ema) and polarized (psa_p, psa_s) modules against loop-by-loop re-statements of the
papers' equations, the papers' initialisation and parameter counts, and their hyper-parameter errors.

No reference implementation of these modules is installed, so each ``_..._by_loops`` function below
re-states the paper's equations one image / group / position at a time, independently of the vectorised
code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from attention_helpers import assert_output_is_input_times_gate, n_params, randomise_
from torch import nn

from attnyolo.registry import create

RESNET50_PARAMS = 25_557_032  # torchvision resnet50, ImageNet head


def _resnet50_with(name: str) -> nn.Module:
    """ResNet-50 with the module after each bottleneck's last BN, before the residual add (the papers' placement)."""
    net = torchvision.models.resnet50()
    for block in net.modules():
        if isinstance(block, torchvision.models.resnet.Bottleneck):
            block.bn3 = nn.Sequential(block.bn3, create(name, block.bn3.num_features))
    return net


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# ---- sge: Spatial Group-wise Enhance --------------------------------------------------------------


def _sge_by_loops(x, gamma, beta, groups, eps=1e-5):
    b, c, h, w = x.shape
    per, m = c // groups, h * w
    y = torch.empty_like(x)
    for n in range(b):
        for g in range(groups):
            feats = x[n, g * per : (g + 1) * per].reshape(per, m)  # one feature vector per position
            mean_vec = [sum(feats[k, i].item() for i in range(m)) / m for k in range(per)]
            sim = [sum(feats[k, i].item() * mean_vec[k] for k in range(per)) for i in range(m)]
            mu = sum(sim) / m
            sigma = math.sqrt(sum((s - mu) ** 2 for s in sim) / m)  # the paper's 1/m
            for i in range(m):
                a = gamma[g] * (sim[i] - mu) / (sigma + eps) + beta[g]
                y[n, g * per : (g + 1) * per, i // w, i % w] = feats[:, i] * _sigmoid(a)
    return y


def test_sge_matches_the_papers_equations_by_loops():
    m = randomise_(create("sge", 8, groups=2))
    x = torch.randn(2, 8, 3, 4)
    with torch.no_grad():
        expected = _sge_by_loops(x, m.weight.flatten().tolist(), m.bias.flatten().tolist(), groups=2)
        torch.testing.assert_close(m(x), expected, rtol=1e-4, atol=1e-5)


def test_sge_initial_output_is_sigmoid_of_one_times_input():
    m = create("sge", 128)  # official init: weight 0, bias 1
    x = torch.randn(2, 128, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(m(x), x * _sigmoid(1.0))


def test_sge_on_a_single_position_is_finite_sigmoid_of_bias():
    m = randomise_(create("sge", 64, groups=4))
    x = torch.randn(1, 64, 1, 1)
    with torch.no_grad():
        expected = x * torch.sigmoid(m.bias).repeat_interleave(16, dim=1)
        torch.testing.assert_close(m(x), expected)


def test_sge_resnet50_adds_two_parameters_per_group_per_block():
    # paper/official table: SGE-ResNet50 25.56M; 16 bottlenecks x 64 groups x (gamma, beta)
    count = n_params(_resnet50_with("sge"))
    assert count == RESNET50_PARAMS + 16 * 64 * 2 == 25_559_080
    assert round(count / 1e6, 2) == 25.56


# ---- sa: Shuffle Attention ------------------------------------------------------------------------


def _sa_by_loops(x, cw, cb, sw, sb, gn_w, gn_b, groups, eps=1e-5):
    b, c, h, w = x.shape
    per, half = c // groups, c // (2 * groups)
    y = torch.empty_like(x)
    for n in range(b):
        for g in range(groups):
            for k in range(per):
                ch = g * per + k
                plane = x[n, ch]
                if k < half:  # channel branch: sigmoid(W1 * GAP + b1)
                    y[n, ch] = plane * _sigmoid(cw[k] * plane.mean().item() + cb[k])
                else:  # spatial branch: sigmoid(W2 * GN(x) + b2), GN = one channel per group
                    j = k - half
                    mu, var = plane.mean(), ((plane - plane.mean()) ** 2).mean()
                    gn = (plane - mu) / math.sqrt(var.item() + eps) * gn_w[j] + gn_b[j]
                    y[n, ch] = plane * torch.sigmoid(sw[j] * gn + sb[j])
    out = torch.empty_like(y)
    for i in range(2):  # channel shuffle with 2 groups: channel i * c/2 + j moves to j * 2 + i
        for j in range(c // 2):
            out[:, j * 2 + i] = y[:, i * (c // 2) + j]
    return out


def test_sa_matches_the_papers_equations_by_loops():
    m = randomise_(create("sa", 16, groups=2))
    x = torch.randn(2, 16, 3, 5)
    flat = [t.flatten().tolist() for t in (m.cweight, m.cbias, m.sweight, m.sbias, m.gn.weight, m.gn.bias)]
    with torch.no_grad():
        torch.testing.assert_close(m(x), _sa_by_loops(x, *flat, groups=2), rtol=1e-4, atol=1e-5)


def test_sa_initial_output_is_shuffled_sigmoid_of_one_times_input():
    m = create("sa", 256)  # official init: weights 0, biases 1
    x = torch.randn(2, 256, 4, 3)
    shuffled = x.reshape(2, 2, 128, 4, 3).transpose(1, 2).reshape(2, 256, 4, 3)
    with torch.no_grad():
        torch.testing.assert_close(m(x), shuffled * _sigmoid(1.0))


def test_sa_resnet50_adds_3c_over_g_parameters_per_block():
    # W1, b1, W2, b2 and the GroupNorm affine, each C/2G: 3C/G = 12/24/48/96 per block of stage 1..4.
    # The paper reports 25.56M in total (its abstract's "300 parameters" matches no count of this structure).
    count = n_params(_resnet50_with("sa"))
    assert count == RESNET50_PARAMS + 3 * 12 + 4 * 24 + 6 * 48 + 3 * 96 == 25_557_740
    assert round(count / 1e6, 2) == 25.56


# ---- ema: Efficient Multi-Scale Attention ---------------------------------------------------------


def _ema_by_loops(x, m, groups, eps=1e-5):
    b, c, h, w = x.shape
    cg = c // groups
    w1, b1 = m.conv1x1.weight[:, :, 0, 0], m.conv1x1.bias
    y = torch.empty_like(x)
    for n in range(b):
        for g in range(groups):
            xg = x[n, g * cg : (g + 1) * cg]  # (cg, H, W)
            # 1x1 branch: shared 1x1 conv on the H-pooled and W-pooled strips, gates, per-channel GroupNorm
            zh = [[sum(w1[o, k] * xg[k, i].mean() for k in range(cg)) + b1[o] for i in range(h)] for o in range(cg)]
            zw = [[sum(w1[o, k] * xg[k, :, j].mean() for k in range(cg)) + b1[o] for j in range(w)] for o in range(cg)]
            x1 = torch.empty_like(xg)
            for o in range(cg):
                for i in range(h):
                    for j in range(w):
                        x1[o, i, j] = xg[o, i, j] * torch.sigmoid(zh[o][i]) * torch.sigmoid(zw[o][j])
                mu, var = x1[o].mean(), ((x1[o] - x1[o].mean()) ** 2).mean()
                x1[o] = (x1[o] - mu) / torch.sqrt(var + eps) * m.gn.weight[o] + m.gn.bias[o]
            # 3x3 branch, zero padding
            x2 = torch.zeros_like(xg)
            for o in range(cg):
                for i in range(h):
                    for j in range(w):
                        acc = m.conv3x3.bias[o].clone()
                        for k in range(cg):
                            for di in range(3):
                                for dj in range(3):
                                    ii, jj = i + di - 1, j + dj - 1
                                    if 0 <= ii < h and 0 <= jj < w:
                                        acc = acc + m.conv3x3.weight[o, k, di, dj] * xg[k, ii, jj]
                        x2[o, i, j] = acc
            # cross-spatial learning: softmax over channels of each branch's GAP, dot with the other branch
            s1 = torch.softmax(torch.stack([x1[o].mean() for o in range(cg)]), 0)
            s2 = torch.softmax(torch.stack([x2[o].mean() for o in range(cg)]), 0)
            for i in range(h):
                for j in range(w):
                    a = sum(s1[o] * x2[o, i, j] + s2[o] * x1[o, i, j] for o in range(cg))
                    y[n, g * cg : (g + 1) * cg, i, j] = xg[:, i, j] * torch.sigmoid(a)
    return y


def test_ema_matches_the_papers_equations_by_loops():
    m = randomise_(create("ema", 6, groups=2))
    x = torch.randn(2, 6, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _ema_by_loops(x, m, groups=2), rtol=1e-4, atol=1e-5)


def test_ema_param_count_is_two_convs_and_a_groupnorm_on_c_over_g_channels():
    cg = 256 // 32
    assert n_params(create("ema", 256)) == (cg * cg + cg) + (9 * cg * cg + cg) + 2 * cg


def test_ema_on_16_channels_with_default_groups_names_channels_and_groups():
    with pytest.raises(ValueError, match=r"channels=16 .*groups=32"):
        create("ema", 16)


# ---- psa_p / psa_s: Polarized Self-Attention ------------------------------------------------------


def _psa_by_loops(x, m, layout, eps=1e-5):
    b, c, h, w = x.shape
    mid = m.ch_wv.out_channels
    pos = [(i, j) for i in range(h) for j in range(w)]

    def conv1x1(weight, img, o, i, j):
        return sum(weight[o, k, 0, 0] * img[k, i, j] for k in range(c))

    def channel_weights(img):  # Eq. 1, one weight per channel
        q = torch.softmax(torch.stack([conv1x1(m.ch_wq.weight, img, 0, i, j) for i, j in pos]), 0)
        z = [sum(q[p] * conv1x1(m.ch_wv.weight, img, k, i, j) for p, (i, j) in enumerate(pos)) for k in range(mid)]
        wz = torch.stack([sum(m.ch_wz.weight[o, k, 0, 0] * z[k] for k in range(mid)) for o in range(c)])
        ln = (wz - wz.mean()) / torch.sqrt(((wz - wz.mean()) ** 2).mean() + eps) * m.ch_norm.weight + m.ch_norm.bias
        return torch.sigmoid(ln)

    def spatial_weights(img):  # Eq. 2, one weight per position
        gq = torch.stack([sum(conv1x1(m.sp_wq.weight, img, k, i, j) for i, j in pos) / len(pos) for k in range(mid)])
        s = torch.softmax(gq, 0)
        a = torch.empty(h, w)
        for i, j in pos:
            a[i, j] = torch.sigmoid(sum(s[k] * conv1x1(m.sp_wv.weight, img, k, i, j) for k in range(mid)))
        return a

    y = torch.empty_like(x)
    for n in range(b):
        a_ch = channel_weights(x[n])[:, None, None]
        if layout == "parallel":  # Eq. 3
            y[n] = a_ch * x[n] + spatial_weights(x[n])[None] * x[n]
        else:  # Eq. 4
            z = a_ch * x[n]
            y[n] = spatial_weights(z)[None] * z
    return y


@pytest.mark.parametrize(("name", "layout"), [("psa_p", "parallel"), ("psa_s", "sequential")])
def test_psa_matches_the_papers_equations_by_loops(name, layout):
    m = randomise_(create(name, 6))
    x = torch.randn(2, 6, 3, 2)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _psa_by_loops(x, m, layout), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["psa_p", "psa_s"])
def test_psa_param_count_is_five_bias_free_convs_and_a_layernorm(name):
    c = 64
    wq_wv_wz = c * 1 + c * (c // 2) + (c // 2) * c
    spatial = 2 * c * (c // 2)
    assert n_params(create(name, c)) == wq_wv_wz + 2 * c + spatial


@pytest.mark.parametrize("name", ["psa_p", "psa_s"])
def test_psa_gate_returns_the_full_applied_weight_map(name):
    assert_output_is_input_times_gate(randomise_(create(name, 8)), torch.randn(2, 8, 4, 5))


def test_psa_works_on_one_channel():
    m = create("psa_s", 1)
    assert m(torch.randn(2, 1, 3, 3)).shape == (2, 1, 3, 3)


# ---- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channels", "kwargs", "pattern"),
    [
        ("sge", 64, {"groups": 0}, "groups"),
        ("sge", 64, {"groups": 3}, "channels=64"),
        ("sge", 64, {"eps": 0}, "eps"),
        ("sa", 64, {}, r"channels=64 .*2 \* groups|channels=64 .*groups \* 2"),
        ("sa", 96, {"groups": 0}, "groups"),
        ("ema", 48, {"groups": 5}, "channels=48"),
        ("ema", 64, {"groups": 2.5}, "groups"),
        ("psa_p", 64, {"layout": "diagonal"}, "layout"),
    ],
)
def test_bad_hyper_parameters_raise_value_error_naming_the_parameter(name, channels, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        create(name, channels, **kwargs)
