"""2022-2024 convolutional attentions (lska, msca, caa, mlca, cpca) against their official code.

None of the official repositories is installable, so each reference below restates the authors' forward pass
op by op in the authors' layout (their layer list, their reshapes, PyTorch's own pooling), independently of
how the zoo module is written; the zoo module must load the reference's state dict and give its outputs.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from attention_helpers import assert_same_output, capture, load_weights, randomise_
from torch import nn

from attnyolo.registry import create

# ---- LSKA ---------------------------------------------------------------------------------------------


class OfficialLSKA(nn.Module):
    """The official ``LSKA(dim, k_size)`` for k_size 7 and 23, its conv list written out as in the repository."""

    LAYERS = {  # k_size: ((local kernel, local pad), (dilated kernel, dilated pad, dilation))
        7: ((3, 1), (3, 2, 2)),
        23: ((5, 2), (7, 9, 3)),
    }

    def __init__(self, dim: int, k_size: int):
        super().__init__()
        (k0, p0), (k1, p1, d1) = self.LAYERS[k_size]
        self.conv0h = nn.Conv2d(dim, dim, (1, k0), padding=(0, p0), groups=dim)
        self.conv0v = nn.Conv2d(dim, dim, (k0, 1), padding=(p0, 0), groups=dim)
        self.conv_spatial_h = nn.Conv2d(dim, dim, (1, k1), padding=(0, p1), groups=dim, dilation=d1)
        self.conv_spatial_v = nn.Conv2d(dim, dim, (k1, 1), padding=(p1, 0), groups=dim, dilation=d1)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        u = x.clone()
        attn = self.conv0h(x)
        attn = self.conv0v(attn)
        attn = self.conv_spatial_h(attn)
        attn = self.conv_spatial_v(attn)
        attn = self.conv1(attn)
        return u * attn


@pytest.mark.parametrize("k_size", [7, 23])
def test_lska_matches_the_official_layer(k_size):
    ref = randomise_(OfficialLSKA(16, k_size))
    ours = create("lska", 16, k_size=k_size)
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(2, 16, 13, 30))


def test_lska_refuses_a_kernel_the_paper_does_not_decompose():
    with pytest.raises(ValueError, match="k_size"):
        create("lska", 16, k_size=9)


def test_lska_gate_sees_the_map_that_multiplies_the_input():
    m = randomise_(create("lska", 8, k_size=11)).eval()
    x = torch.randn(1, 8, 9, 12)
    y, attn = capture(m, x)
    torch.testing.assert_close(y, x * attn)


# ---- MSCA ---------------------------------------------------------------------------------------------


class OfficialMSCA(nn.Module):
    """SegNeXt's ``AttentionModule(dim)`` (mscan.py)."""

    def __init__(self, dim):
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv0_1 = nn.Conv2d(dim, dim, (1, 7), padding=(0, 3), groups=dim)
        self.conv0_2 = nn.Conv2d(dim, dim, (7, 1), padding=(3, 0), groups=dim)
        self.conv1_1 = nn.Conv2d(dim, dim, (1, 11), padding=(0, 5), groups=dim)
        self.conv1_2 = nn.Conv2d(dim, dim, (11, 1), padding=(5, 0), groups=dim)
        self.conv2_1 = nn.Conv2d(dim, dim, (1, 21), padding=(0, 10), groups=dim)
        self.conv2_2 = nn.Conv2d(dim, dim, (21, 1), padding=(10, 0), groups=dim)
        self.conv3 = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        u = x.clone()
        attn = self.conv0(x)
        attn_0 = self.conv0_2(self.conv0_1(attn))
        attn_1 = self.conv1_2(self.conv1_1(attn))
        attn_2 = self.conv2_2(self.conv2_1(attn))
        attn = attn + attn_0 + attn_1 + attn_2
        return self.conv3(attn) * u


def test_msca_matches_the_official_attention_module():
    ref = randomise_(OfficialMSCA(12), std=0.2)
    ours = create("msca", 12)
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(2, 12, 25, 9))


# ---- CAA ----------------------------------------------------------------------------------------------


class _ConvModule(nn.Module):
    """mmcv ``ConvModule`` as PKINet configures it: conv (bias only without norm), BN(0.03, 1e-3), SiLU."""

    def __init__(self, cin, cout, kernel, padding, groups=1, norm=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, 1, padding, groups=groups, bias=not norm)
        self.norm = norm
        if norm:
            self.bn = nn.BatchNorm2d(cout, momentum=0.03, eps=0.001)
            self.activate = nn.SiLU()

    def forward(self, x):
        x = self.conv(x)
        return self.activate(self.bn(x)) if self.norm else x


class OfficialCAA(nn.Module):
    """PKINet's ``CAA``; it returns the attention factor, which the caller multiplies in."""

    def __init__(self, channels, h_kernel_size=11, v_kernel_size=11):
        super().__init__()
        self.avg_pool = nn.AvgPool2d(7, 1, 3)
        self.conv1 = _ConvModule(channels, channels, 1, 0)
        self.h_conv = _ConvModule(channels, channels, (1, h_kernel_size), (0, h_kernel_size // 2), channels, False)
        self.v_conv = _ConvModule(channels, channels, (v_kernel_size, 1), (v_kernel_size // 2, 0), channels, False)
        self.conv2 = _ConvModule(channels, channels, 1, 0)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.conv2(self.v_conv(self.h_conv(self.conv1(self.avg_pool(x))))))


class _Applied(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor(x)


CAA_KEYS = {"factor.conv1.activate": "conv1.act", "factor.h_conv.conv": "h_conv", "factor.v_conv.conv": "v_conv"}


@pytest.mark.parametrize("train", [False, True])
def test_caa_gates_its_input_with_the_official_factor(train):
    ref = _Applied(randomise_(OfficialCAA(8, 11, 7)))
    ours = create("caa", 8, h_kernel_size=11, v_kernel_size=7)
    load_weights(ours, ref, {**CAA_KEYS, "factor": ""})
    assert_same_output(ours, ref, torch.randn(3, 8, 10, 6), train=train)
    # Train mode updated both BatchNorms with PKINet's momentum 0.03: their running stats agree too.
    torch.testing.assert_close(ours.conv2.bn.running_mean, ref.factor.conv2.bn.running_mean)


# ---- MLCA ---------------------------------------------------------------------------------------------


class OfficialMLCA(nn.Module):
    """The official ``MLCA`` forward, including its reshape of the global branch (correct at batch 1)."""

    def __init__(self, in_size, local_size=5, gamma=2, b=1, local_weight=0.5):
        super().__init__()
        self.local_size = local_size
        t = int(abs(math.log(in_size, 2) + b) / gamma)
        k = t if t % 2 else t + 1
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.conv_local = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.local_weight = local_weight

    def forward(self, x):
        s = self.local_size
        local_arv = F.adaptive_avg_pool2d(x, s)
        global_arv = F.adaptive_avg_pool2d(local_arv, 1)
        b, c, m, n = x.shape
        temp_local = local_arv.view(b, c, -1).transpose(-1, -2).reshape(b, 1, -1)
        temp_global = global_arv.view(b, c, -1).transpose(-1, -2)
        y_local = self.conv_local(temp_local)
        y_global = self.conv(temp_global)
        y_local_t = y_local.reshape(b, s * s, c).transpose(-1, -2).view(b, c, s, s)
        y_global_t = y_global.view(b, -1).transpose(-1, -2).unsqueeze(-1)  # (C, B, 1): mixes images when B > 1
        att_local = y_local_t.sigmoid()
        att_global = F.adaptive_avg_pool2d(y_global_t.sigmoid(), [s, s])
        att_all = F.adaptive_avg_pool2d(att_global * (1 - self.local_weight) + att_local * self.local_weight, [m, n])
        return x * att_all


@pytest.mark.parametrize("channels", [64, 256])  # ECA kernel 3 and 5
@pytest.mark.parametrize("hw", [(20, 20), (13, 7), (3, 4)], ids=["20x20", "13x7", "3x4"])
def test_mlca_matches_the_official_code_at_batch_one(channels, hw):
    ref = randomise_(OfficialMLCA(channels), std=0.5)
    ours = create("mlca", channels)
    load_weights(ours, ref)
    assert ours.conv.kernel_size == ref.conv.kernel_size
    assert_same_output(ours, ref, torch.randn(1, channels, *hw))


def test_mlca_weights_each_image_by_itself_in_a_batch():
    m = randomise_(create("mlca", 32), std=0.5).eval()
    x = torch.randn(3, 32, 9, 11)
    with torch.no_grad():
        together = m(x)
        alone = torch.cat([m(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone)


# ---- CPCA ---------------------------------------------------------------------------------------------


class OfficialChannelAttention(nn.Module):
    def __init__(self, input_channels, internal_neurons):
        super().__init__()
        self.fc1 = nn.Conv2d(input_channels, internal_neurons, 1, 1, bias=True)
        self.fc2 = nn.Conv2d(internal_neurons, input_channels, 1, 1, bias=True)

    def forward(self, inputs):
        x1 = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(inputs, (1, 1))))))
        x2 = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(inputs, (1, 1))))))
        return inputs * (x1 + x2)


class OfficialCPCA(nn.Module):
    """CPCANet's ``RepBlock`` (in = out channels, channelAttention_reduce=4)."""

    def __init__(self, c):
        super().__init__()
        self.ca = OfficialChannelAttention(c, c // 4)
        self.dconv5_5 = nn.Conv2d(c, c, 5, padding=2, groups=c)
        self.dconv1_7 = nn.Conv2d(c, c, (1, 7), padding=(0, 3), groups=c)
        self.dconv7_1 = nn.Conv2d(c, c, (7, 1), padding=(3, 0), groups=c)
        self.dconv1_11 = nn.Conv2d(c, c, (1, 11), padding=(0, 5), groups=c)
        self.dconv11_1 = nn.Conv2d(c, c, (11, 1), padding=(5, 0), groups=c)
        self.dconv1_21 = nn.Conv2d(c, c, (1, 21), padding=(0, 10), groups=c)
        self.dconv21_1 = nn.Conv2d(c, c, (21, 1), padding=(10, 0), groups=c)
        self.conv = nn.Conv2d(c, c, 1)
        self.act = nn.GELU()

    def forward(self, inputs):
        inputs = self.ca(self.act(self.conv(inputs)))
        x_init = self.dconv5_5(inputs)
        x_1 = self.dconv7_1(self.dconv1_7(x_init))
        x_2 = self.dconv11_1(self.dconv1_11(x_init))
        x_3 = self.dconv21_1(self.dconv1_21(x_init))
        x = x_1 + x_2 + x_3 + x_init
        return self.conv(self.conv(x) * inputs)


def test_cpca_matches_the_official_block():
    ref = randomise_(OfficialCPCA(16), std=0.2)
    ours = create("cpca", 16)
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(2, 16, 11, 14))


def test_cpca_channel_gate_sums_two_sigmoids():
    m = randomise_(create("cpca", 8)).eval()
    _, channel_weights = capture(m, torch.randn(2, 8, 5, 6), "channel_gate")
    assert channel_weights.shape == (2, 8, 1, 1)
    assert ((channel_weights > 0) & (channel_weights < 2)).all()
