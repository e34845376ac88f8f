"""2022-2024 attention layers (external, mvit2, agent, hilo, cga, outlook, cot, irmb, biformer) against their
official code.

``outlook`` is compared with timm's ``OutlookAttention`` (installed). The others have no installable official
package: each reference restates the authors' forward pass op by op in their layout (``nn.Linear`` on tokens,
``F.unfold``/``F.fold``, their bias-index tables; CoT's CUDA aggregation, iRMB's windows and BiFormer's regions
as Python loops), and the zoo module must load the reference's state dict and give its outputs.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from attention_helpers import assert_same_output, capture, load_weights, randomise_
from timm.models.volo import OutlookAttention as TimmOutlookAttention
from torch import nn

from attnyolo.registry import create

# ---- external attention -------------------------------------------------------------------------------


class OfficialExternalAttention(nn.Module):
    """EANet's ``External_attention(c)`` with BatchNorm (the official norm_layer is SyncBatchNorm)."""

    def __init__(self, c, k=64):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1)
        self.linear_0 = nn.Conv1d(c, k, 1, bias=False)
        self.linear_1 = nn.Conv1d(k, c, 1, bias=False)
        self.conv2 = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        idn = x
        x = self.conv1(x)
        b, c, h, w = x.size()
        attn = self.linear_0(x.view(b, c, h * w))
        attn = F.softmax(attn, dim=-1)
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))
        x = self.linear_1(attn).view(b, c, h, w)
        return F.relu(self.conv2(x) + idn)


@pytest.mark.parametrize("train", [False, True])
def test_external_matches_the_official_layer(train):
    ref = randomise_(OfficialExternalAttention(16, 32))
    ours = create("external", 16, memory_units=32)
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(2, 16, 7, 9), train=train)


def test_external_weights_are_normalised_over_positions_then_units():
    m = randomise_(create("external", 8, memory_units=16)).eval()
    _, attn = capture(m, torch.randn(2, 8, 5, 6))
    assert attn.shape == (2, 16, 30)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(2, 30))  # the l1 step over the units


def test_external_value_memory_starts_as_the_key_memory_transposed():
    m = create("external", 8, memory_units=16)
    torch.testing.assert_close(m.linear_1.weight, m.linear_0.weight.transpose(0, 1))
    assert m.linear_1.weight.data_ptr() != m.linear_0.weight.data_ptr()  # two independent layers


# ---- MobileViTv2 separable self-attention --------------------------------------------------------------


class OfficialLinearSelfAttention(nn.Module):
    """ml-cvnets ``LinearSelfAttention`` applied as MobileViTv2 does: unfold 2x2 patches, attend, fold."""

    def __init__(self, embed_dim, patch=2):
        super().__init__()
        self.embed_dim, self.patch = embed_dim, patch
        self.qkv_proj = nn.Conv2d(embed_dim, 1 + 2 * embed_dim, 1)
        self.out_proj = nn.Conv2d(embed_dim, embed_dim, 1)

    def forward(self, fm):
        b, c, h, w = fm.shape
        p = self.patch
        patches = F.unfold(fm, p, stride=p).reshape(b, c, p * p, -1)  # [B, C, P, N]
        qkv = self.qkv_proj(patches)
        query, key, value = torch.split(qkv, [1, self.embed_dim, self.embed_dim], dim=1)
        context_scores = F.softmax(query, dim=-1)
        context_vector = torch.sum(key * context_scores, dim=-1, keepdim=True)
        out = self.out_proj(F.relu(value) * context_vector.expand_as(value))
        return F.fold(out.reshape(b, c * p * p, -1), (h, w), p, stride=p)


def test_mvit2_matches_the_official_layer_on_whole_patches():
    ref = randomise_(OfficialLinearSelfAttention(12))
    ours = create("mvit2", 12)
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(2, 12, 8, 14))


def test_mvit2_on_a_ragged_map_pools_each_patch_position_over_the_real_pixels_only():
    # Loop restatement of Eq. 2-4 per pixel-in-patch position (dy, dx): the softmax runs over the real
    # pixels at that position, then every such pixel gets ReLU(value) * context.
    m = randomise_(create("mvit2", 6)).eval()
    x = torch.randn(1, 6, 5, 7, dtype=torch.float64)
    m = m.double()
    with torch.no_grad():
        qkv = m.qkv_proj(x)[0]
        q, k, v = qkv[0], qkv[1:7], qkv[7:]
        mixed = torch.zeros(6, 5, 7, dtype=torch.float64)
        for dy, dx in itertools.product(range(2), range(2)):
            ys, xs = torch.arange(dy, 5, 2), torch.arange(dx, 7, 2)
            scores = torch.softmax(q[ys][:, xs].flatten(), 0)
            context = (k[:, ys][:, :, xs].flatten(1) * scores).sum(1)
            for y in ys:
                for xx in xs:
                    mixed[:, y, xx] = torch.relu(v[:, y, xx]) * context
        want = m.out_proj(mixed[None])
        torch.testing.assert_close(m(x), want)


# ---- agent attention ----------------------------------------------------------------------------------


class OfficialAgentAttention(nn.Module):
    """Agent-PVT's ``AgentAttention`` with sr_ratio=1 on a ``(H, W)`` map (tokens ``(B, N, C)``)."""

    def __init__(self, dim, hw, num_heads=8, agent_num=49):
        super().__init__()
        self.num_heads, self.agent_num, self.hw = num_heads, agent_num, hw
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, dim * 2, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.an_bias = nn.Parameter(torch.zeros(num_heads, agent_num, 7, 7))
        self.na_bias = nn.Parameter(torch.zeros(num_heads, agent_num, 7, 7))
        self.ah_bias = nn.Parameter(torch.zeros(1, num_heads, agent_num, hw[0], 1))
        self.aw_bias = nn.Parameter(torch.zeros(1, num_heads, agent_num, 1, hw[1]))
        self.ha_bias = nn.Parameter(torch.zeros(1, num_heads, hw[0], 1, agent_num))
        self.wa_bias = nn.Parameter(torch.zeros(1, num_heads, 1, hw[1], agent_num))
        self.pool = nn.AdaptiveAvgPool2d(int(agent_num**0.5))

    def forward(self, x):
        b, n, c = x.shape
        (h, w), nh = self.hw, self.num_heads
        hd = c // nh
        q = self.q(x)
        k, v = self.kv(x).reshape(b, -1, 2, c).permute(2, 0, 1, 3)
        agent = self.pool(q.reshape(b, h, w, c).permute(0, 3, 1, 2)).reshape(b, c, -1).permute(0, 2, 1)
        q = q.reshape(b, n, nh, hd).permute(0, 2, 1, 3)
        k = k.reshape(b, n, nh, hd).permute(0, 2, 1, 3)
        v = v.reshape(b, n, nh, hd).permute(0, 2, 1, 3)
        agent = agent.reshape(b, self.agent_num, nh, hd).permute(0, 2, 1, 3)
        bias1 = F.interpolate(self.an_bias, size=(h, w), mode="bilinear").reshape(1, nh, self.agent_num, -1)
        bias2 = (self.ah_bias + self.aw_bias).reshape(1, nh, self.agent_num, -1)
        agent_attn = F.softmax((agent * self.scale) @ k.transpose(-2, -1) + bias1 + bias2, dim=-1)
        agent_v = agent_attn @ v
        abias1 = F.interpolate(self.na_bias, size=(h, w), mode="bilinear").reshape(1, nh, self.agent_num, -1)
        abias1 = abias1.permute(0, 1, 3, 2)
        abias2 = (self.ha_bias + self.wa_bias).reshape(1, nh, -1, self.agent_num)
        q_attn = F.softmax((q * self.scale) @ agent.transpose(-2, -1) + abias1 + abias2, dim=-1)
        x = (q_attn @ agent_v).transpose(1, 2).reshape(b, n, c)
        v = v.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)
        x = x + self.dwc(v).permute(0, 2, 3, 1).reshape(b, n, c)
        return self.proj(x)


class _OnMaps(nn.Module):
    """Run a token-sequence (or channels-last) reference on ``(B, C, H, W)`` maps."""

    def __init__(self, inner, channels_last=False):
        super().__init__()
        self.inner, self.channels_last = inner, channels_last

    def forward(self, x):
        b, c, h, w = x.shape
        if self.channels_last:
            return self.inner(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.inner(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)


def _linear_to_conv(module: nn.Module) -> dict:
    """State dict with every 2-D ``nn.Linear`` weight reshaped to a 1x1 conv weight."""
    state = module.state_dict()
    return {k: (v[..., None, None] if v.dim() == 2 and k.endswith("weight") else v) for k, v in state.items()}


@pytest.mark.parametrize("hw", [(9, 12), (14, 14)])
def test_agent_matches_the_official_layer_at_its_size(hw):
    ref = randomise_(OfficialAgentAttention(16, hw), std=0.2)
    ours = create("agent", 16, feat_size=hw)
    ours.load_state_dict({k.removeprefix("inner."): v for k, v in _linear_to_conv(_OnMaps(ref)).items()})
    assert_same_output(ours, _OnMaps(ref), torch.randn(2, 16, *hw))


def test_agent_gates_are_row_stochastic_over_agents_and_positions():
    m = randomise_(create("agent", 16, agent_num=9), std=0.2).eval()
    _, broadcast, aggregate = capture(m, torch.randn(2, 16, 5, 4), "gate", "agent_gate")
    assert broadcast.shape == (2, 8, 20, 9) and aggregate.shape == (2, 8, 9, 20)
    torch.testing.assert_close(broadcast.sum(-1), torch.ones(2, 8, 20))
    torch.testing.assert_close(aggregate.sum(-1), torch.ones(2, 8, 9))


# ---- HiLo ---------------------------------------------------------------------------------------------


class OfficialHiLo(nn.Module):
    """LITv2's ``HiLo`` (classification version: H, W multiples of the window)."""

    def __init__(self, dim, num_heads=8, window_size=2, alpha=0.5):
        super().__init__()
        head_dim = int(dim / num_heads)
        self.dim, self.ws = dim, window_size
        self.l_heads = int(num_heads * alpha)
        self.l_dim = self.l_heads * head_dim
        self.h_heads = num_heads - self.l_heads
        self.h_dim = self.h_heads * head_dim
        self.scale = head_dim**-0.5
        self.sr = nn.AvgPool2d(window_size, window_size)
        self.l_q = nn.Linear(dim, self.l_dim, bias=False)
        self.l_kv = nn.Linear(dim, self.l_dim * 2, bias=False)
        self.l_proj = nn.Linear(self.l_dim, self.l_dim)
        self.h_qkv = nn.Linear(dim, self.h_dim * 3, bias=False)
        self.h_proj = nn.Linear(self.h_dim, self.h_dim)

    def hifi(self, x):
        b, h, w, c = x.shape
        hg, wg = h // self.ws, w // self.ws
        x = x.reshape(b, hg, self.ws, wg, self.ws, c).transpose(2, 3)
        qkv = self.h_qkv(x).reshape(b, hg * wg, -1, 3, self.h_heads, self.h_dim // self.h_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        attn = (attn @ v).transpose(2, 3).reshape(b, hg, wg, self.ws, self.ws, self.h_dim)
        return self.h_proj(attn.transpose(2, 3).reshape(b, hg * self.ws, wg * self.ws, self.h_dim))

    def lofi(self, x):
        b, h, w, c = x.shape
        q = self.l_q(x).reshape(b, h * w, self.l_heads, self.l_dim // self.l_heads).permute(0, 2, 1, 3)
        x_ = self.sr(x.permute(0, 3, 1, 2)).reshape(b, c, -1).permute(0, 2, 1)
        kv = self.l_kv(x_).reshape(b, -1, 2, self.l_heads, self.l_dim // self.l_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ kv[0].transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.l_proj((attn @ kv[1]).transpose(1, 2).reshape(b, h, w, self.l_dim))

    def forward(self, x):
        return torch.cat((self.hifi(x), self.lofi(x)), dim=-1)


@pytest.mark.parametrize("observed", [False, True], ids=["fused", "explicit"])
def test_hilo_matches_the_official_layer(observed):
    ref = randomise_(OfficialHiLo(32))
    ours = create("hilo", 32)
    ours.gate.capture = ours.local_gate.capture = observed
    load_weights(ours, ref)
    assert_same_output(ours, _OnMaps(ref, channels_last=True), torch.randn(2, 32, 6, 10), atol=1e-5)


def test_hilo_gate_sees_the_window_weights_when_every_head_is_hifi():
    m = randomise_(create("hilo", 16, num_heads=2, alpha=0.0)).eval()
    _, attn = capture(m, torch.randn(1, 16, 4, 6))
    assert attn.shape == (1, 6, 2, 4, 4)  # (B, windows, heads, 2x2 queries, 2x2 keys)


def test_hilo_lofi_on_a_ragged_map_pools_the_mean_of_the_real_pixels():
    # All heads Lo-Fi (alpha=1): keys/values come from 2x2 means; a 3x5 map has partial cells, whose mean
    # is over the real pixels only. Restated with explicit cell means and a plain softmax.
    m = randomise_(create("hilo", 8, num_heads=2, alpha=1.0)).eval().double()
    x = torch.randn(1, 8, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        t = x[0].permute(1, 2, 0)  # (H, W, C)
        cells = [t[y : y + 2, xx : xx + 2].reshape(-1, 8).mean(0) for y in range(0, 3, 2) for xx in range(0, 5, 2)]
        kv = m.l_kv(torch.stack(cells))  # (6, 2*8)
        q = m.l_q(t.reshape(15, 8))
        out = []
        for head in range(2):
            sl = slice(4 * head, 4 * head + 4)
            k, v = kv[:, sl], kv[:, 8 + 4 * head : 8 + 4 * head + 4]
            out.append(torch.softmax(q[:, sl] @ k.T * 4**-0.5, dim=-1) @ v)
        want = m.l_proj(torch.cat(out, dim=1)).reshape(3, 5, 8).permute(2, 0, 1)
        torch.testing.assert_close(m(x)[0], want)


# ---- EfficientViT cascaded group attention ----------------------------------------------------------


class _Conv2dBN(nn.Sequential):
    def __init__(self, a, b, ks=1, pad=0, groups=1):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, 1, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class OfficialCGA(nn.Module):
    """EfficientViT's ``CascadedGroupAttention`` (resolution = window) inside ``LocalWindowAttention``."""

    def __init__(self, dim, key_dim=16, num_heads=4, kernels=(5, 5, 5, 5), window=7):
        super().__init__()
        self.num_heads, self.key_dim, self.window = num_heads, key_dim, window
        self.scale = key_dim**-0.5
        self.d = dim // num_heads
        self.qkvs = nn.ModuleList(_Conv2dBN(dim // num_heads, key_dim * 2 + self.d) for _ in range(num_heads))
        self.dws = nn.ModuleList(_Conv2dBN(key_dim, key_dim, k, k // 2, groups=key_dim) for k in kernels)
        self.proj = nn.Sequential(nn.ReLU(), _Conv2dBN(self.d * num_heads, dim))
        points = list(itertools.product(range(window), range(window)))
        offsets, idxs = {}, []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                if off not in offsets:
                    offsets[off] = len(offsets)
                idxs.append(offsets[off])
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.LongTensor(idxs).view(len(points), len(points)))

    def attn(self, x):
        b, _, h, w = x.shape
        ab = self.attention_biases[:, self.attention_bias_idxs]
        feats_in, feats_out = x.chunk(self.num_heads, dim=1), []
        feat = feats_in[0]
        for i, qkv in enumerate(self.qkvs):
            if i > 0:
                feat = feat + feats_in[i]
            q, k, v = qkv(feat).view(b, -1, h, w).split([self.key_dim, self.key_dim, self.d], dim=1)
            q = self.dws[i](q)
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)
            attn = ((q.transpose(-2, -1) @ k) * self.scale + ab[i]).softmax(dim=-1)
            feat = (v @ attn.transpose(-2, -1)).view(b, self.d, h, w)
            feats_out.append(feat)
        return self.proj(torch.cat(feats_out, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        ws = self.window
        if h <= ws and w <= ws:
            return self.attn(x)
        x = x.permute(0, 2, 3, 1)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws, ws, c).permute(0, 3, 1, 2)
        x = self.attn(x)
        x = x.permute(0, 2, 3, 1).view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        return x[:, :h, :w].permute(0, 3, 1, 2)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("hw", [(7, 7), (14, 21), (10, 9)], ids=["one-window", "windows", "padded"])
def test_cga_is_the_input_plus_the_official_local_window_attention(hw, train):
    ref = randomise_(OfficialCGA(32), std=0.2)
    ours = create("cga", 32)
    state = {k: v for k, v in ref.state_dict().items() if k != "attention_bias_idxs"}
    ours.load_state_dict(state)
    x = torch.randn(2, 32, *hw)
    ours.train(train)
    ref.train(train)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), x + ref(x), rtol=1e-5, atol=1e-5)


def test_cga_starts_as_the_identity():
    m = create("cga", 16).train()
    x = torch.randn(2, 16, 9, 8)
    torch.testing.assert_close(m(x), x)


# ---- outlook attention ------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(8, 6), (7, 9), (1, 3)], ids=["8x6", "7x9", "1x3"])
def test_outlook_matches_timm_with_the_same_weights(stride, hw):
    ref = randomise_(TimmOutlookAttention(24, num_heads=3, kernel_size=3, padding=1, stride=stride))
    ours = create("outlook", 24, num_heads=3, stride=stride)
    load_weights(ours, ref)
    assert_same_output(ours, _OnMaps(ref, channels_last=True), torch.randn(2, 24, *hw))


def test_outlook_kernel_five_matches_timm():
    ref = randomise_(TimmOutlookAttention(12, num_heads=2, kernel_size=5, padding=2, stride=2), std=0.2)
    ours = create("outlook", 12, num_heads=2, kernel_size=5)
    load_weights(ours, ref)
    assert_same_output(ours, _OnMaps(ref, channels_last=True), torch.randn(1, 12, 9, 7))


# ---- CoT ----------------------------------------------------------------------------------------------


def cuda_aggregation_loop(x: torch.Tensor, weight: torch.Tensor, k: int) -> torch.Tensor:
    """CoTNet's ``aggregation_zeropad`` kernel as loops: ``out[n,c,y,x] = Σ_kk w[n, c % Cw, kk, y, x] ·
    x[n, c, y + i - k//2, x + j - k//2]`` (zero outside), ``weight: (N, 1, Cw, k², H, W)``."""
    n, c, h, w = x.shape
    cw, pad = weight.shape[2], k // 2
    out = torch.zeros_like(x)
    for ch in range(c):
        for i in range(k):
            for j in range(k):
                shifted = torch.zeros(n, h, w, dtype=x.dtype)
                ys, ye = max(0, pad - i), min(h, h + pad - i)
                xs, xe = max(0, pad - j), min(w, w + pad - j)
                shifted[:, ys:ye, xs:xe] = x[:, ch, ys + i - pad : ye + i - pad, xs + j - pad : xe + j - pad]
                out[:, ch] += weight[:, 0, ch % cw, i * k + j] * shifted
    return out


class OfficialCotLayer(nn.Module):
    """CoTNet's ``CotLayer(dim, kernel_size)`` with its CUDA local convolution replaced by the loop above."""

    def __init__(self, dim, kernel_size=3):
        super().__init__()
        self.dim, self.kernel_size = dim, kernel_size
        self.key_embed = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=4, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )
        share_planes, factor = 8, 2
        self.embed = nn.Sequential(
            nn.Conv2d(2 * dim, dim // factor, 1, bias=False),
            nn.BatchNorm2d(dim // factor),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim // factor, pow(kernel_size, 2) * dim // share_planes, kernel_size=1),
            nn.GroupNorm(num_groups=dim // share_planes, num_channels=pow(kernel_size, 2) * dim // share_planes),
        )
        self.conv1x1 = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.bn = nn.BatchNorm2d(dim)
        self.act = nn.SiLU(inplace=True)
        self.radix = 2
        attn_chs = max(dim * self.radix // 4, 32)
        self.se = nn.Sequential(
            nn.Conv2d(dim, attn_chs, 1),
            nn.BatchNorm2d(attn_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(attn_chs, 2 * dim, 1),
        )

    def forward(self, x):
        k = self.key_embed(x)
        qk = torch.cat([x, k], dim=1)
        b, c, hh, ww = qk.size()
        w = self.embed(qk).view(b, 1, -1, self.kernel_size * self.kernel_size, hh, ww)
        x = self.act(self.bn(cuda_aggregation_loop(self.conv1x1(x), w, self.kernel_size)))
        bb, cc, h, wd = x.shape
        x = torch.cat([x.view(bb, cc, 1, h, wd), k.view(bb, cc, 1, h, wd)], dim=2)
        x_gap = x.sum(dim=2).mean((2, 3), keepdim=True)
        x_attn = F.softmax(self.se(x_gap).view(bb, cc, self.radix), dim=2)
        return (x * x_attn.reshape((bb, cc, self.radix, 1, 1))).sum(dim=2)


@pytest.mark.parametrize("train", [False, True])
def test_cot_matches_the_official_layer(train):
    ref = randomise_(OfficialCotLayer(16), std=0.3)
    ours = create("cot", 16)
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(2, 16, 5, 7), train=train)


def test_cot_with_a_5x5_neighbourhood_matches_the_official_layer():
    ref = randomise_(OfficialCotLayer(24, kernel_size=5), std=0.2)
    ours = create("cot", 24, kernel_size=5)
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(1, 24, 6, 4))


# ---- iRMB ---------------------------------------------------------------------------------------------


class OfficialIRMB(nn.Module):
    """EMO's ``iRMB(dim, dim)`` at its defaults (attn_s, no SE, stride 1), windows taken by strided slicing:
    window (i, j) of the official ``'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1'`` is ``x[..., i::n1, j::n2]``."""

    def __init__(self, dim, dim_head=64, window_size=7, exp_ratio=1.0):
        super().__init__()
        self.dim_head, self.ws, self.num_head = dim_head, window_size, dim // dim_head
        dim_mid = int(dim * exp_ratio)
        self.norm = nn.BatchNorm2d(dim, eps=1e-6)
        self.qk = nn.Sequential()
        self.qk.add_module("conv", nn.Conv2d(dim, 2 * dim, 1, bias=False))
        self.v = nn.Sequential()
        self.v.add_module("conv", nn.Conv2d(dim, dim_mid, 1, bias=False))
        self.v.add_module("act", nn.ReLU())
        self.conv_local = nn.Sequential()
        self.conv_local.add_module("conv", nn.Conv2d(dim_mid, dim_mid, 3, 1, 1, groups=dim_mid, bias=False))
        self.conv_local.add_module("norm", nn.BatchNorm2d(dim_mid, eps=1e-6))
        self.conv_local.add_module("act", nn.SiLU())
        self.proj = nn.Sequential()
        self.proj.add_module("conv", nn.Conv2d(dim_mid, dim, 1, bias=False))

    def forward(self, x):
        shortcut = x
        x = self.norm(x)
        b, c, h, w = x.shape
        ws = self.ws
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, pad_r, 0, pad_b))
        n1, n2 = (h + pad_b) // ws, (w + pad_r) // ws
        qk, v = self.qk(x), self.v(x)  # 1x1 convs: the same whether applied before or after windowing
        out = torch.zeros_like(v)
        for i, j in itertools.product(range(n1), range(n2)):
            qk_w, v_w = qk[..., i::n1, j::n2], v[..., i::n1, j::n2]  # (B, ., ws, ws)
            q, k = qk_w.reshape(b, 2, self.num_head, self.dim_head, ws * ws).transpose(-1, -2).unbind(1)
            vv = v_w.reshape(b, self.num_head, -1, ws * ws).transpose(-1, -2)
            attn = ((q @ k.transpose(-2, -1)) * self.dim_head**-0.5).softmax(dim=-1)
            out[..., i::n1, j::n2] = (attn @ vv).transpose(-1, -2).reshape(b, -1, ws, ws)
        x = out[:, :, :h, :w]
        x = x + self.conv_local(x)
        return shortcut + self.proj(x)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("dim_head", [16, 64])
@pytest.mark.parametrize("hw", [(14, 21), (9, 5)], ids=["whole-windows", "padded"])
def test_irmb_matches_the_official_block(hw, dim_head, train):
    ref = randomise_(OfficialIRMB(128, dim_head=dim_head, exp_ratio=2.0), std=0.1)
    ours = create("irmb", 128, dim_head=dim_head, exp_ratio=2.0)
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(2, 128, *hw), train=train, atol=1e-4, rtol=1e-4)


# ---- BiFormer -----------------------------------------------------------------------------------------


class OfficialBRA(nn.Module):
    """BiFormer's ``BiLevelRoutingAttention`` (auto_pad, hard routing) with its region loop written out."""

    def __init__(self, dim, num_heads=8, n_win=7, topk=4, side_dwconv=5):
        super().__init__()
        self.dim, self.num_heads, self.n_win, self.topk = dim, num_heads, n_win, topk
        self.scale = dim**-0.5
        self.qkv = nn.Module()
        self.qkv.qkv = nn.Linear(dim, 3 * dim)  # QKVLinear
        self.wo = nn.Linear(dim, dim)
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim)

    def forward(self, x):  # NHWC
        n_in, h_in, w_in, c = x.shape
        s = self.n_win
        x = F.pad(x, (0, 0, 0, (s - w_in % s) % s, 0, (s - h_in % s) % s))
        _, hh, ww, _ = x.shape
        rh, rw = hh // s, ww // s
        q, k, v = self.qkv.qkv(x).split([c, c, c], dim=-1)
        lepe = self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        out = torch.zeros_like(v)
        d = c // self.num_heads
        for bi in range(n_in):
            region = [(j * rh, i * rw) for j in range(s) for i in range(s)]
            toks = [lambda t, bi=bi, y=y, xx=xx: t[bi, y : y + rh, xx : xx + rw].reshape(-1, c) for y, xx in region]
            q_win = torch.stack([f(q).mean(0) for f in toks])
            k_win = torch.stack([f(k).mean(0) for f in toks])
            r_idx = ((q_win * self.scale) @ k_win.T).topk(self.topk, dim=-1).indices
            for r, (y, xx) in enumerate(region):
                keys = torch.cat([toks[j](k) for j in r_idx[r].tolist()])
                vals = torch.cat([toks[j](v) for j in r_idx[r].tolist()])
                qr = toks[r](q)
                heads = []
                for m in range(self.num_heads):
                    sl = slice(m * d, (m + 1) * d)
                    attn = ((qr[:, sl] * self.scale) @ keys[:, sl].T).softmax(dim=-1)
                    heads.append(attn @ vals[:, sl])
                out[bi, y : y + rh, xx : xx + rw] = torch.cat(heads, dim=1).reshape(rh, rw, c)
        return self.wo(out + lepe)[:, :h_in, :w_in]


@pytest.mark.parametrize("hw", [(14, 21), (10, 9), (3, 2)], ids=["whole-regions", "padded", "tiny"])
def test_biformer_matches_the_official_routing_attention(hw):
    ref = randomise_(OfficialBRA(32, num_heads=4, n_win=7, topk=4))
    ours = create("biformer", 32, num_heads=4)
    load_weights(ours, ref, {"qkv.qkv": "qkv"})
    assert_same_output(ours, _OnMaps(ref, channels_last=True), torch.randn(2, 32, *hw), atol=1e-5)


def test_biformer_each_region_attends_to_exactly_topk_regions():
    m = randomise_(create("biformer", 16, num_heads=2, n_win=4, topk=3)).eval()
    _, attn = capture(m, torch.randn(1, 16, 8, 8))
    assert attn.shape == (1, 16, 2, 4, 3 * 4)  # (B, regions, heads, tokens per region, topk * tokens)
    torch.testing.assert_close(attn.sum(-1), torch.ones(1, 16, 2, 4))


def test_biformer_refuses_observed_weights_above_the_memory_limit():
    m = create("biformer", 16, num_heads=2, memory_limit_mb=0.01)
    m.gate.capture = True
    with pytest.raises(ValueError, match="memory_limit_mb"):
        m(torch.randn(1, 16, 28, 28))
    m.gate.capture = False
    assert m(torch.randn(1, 16, 28, 28)).shape == (1, 16, 28, 28)  # the fused kernel stores no matrix


# ---- DAT ----------------------------------------------------------------------------------------------


class OfficialDAttention(nn.Module):
    """DAT's ``DAttentionBaseline`` (v1) with the table position bias (use_pe, not dwc/fixed/log-cpb)."""

    def __init__(self, dim, q_size, n_heads=8, n_groups=2, stride=1, offset_range_factor=2, ksize=5):
        super().__init__()
        self.n_heads, self.n_groups, self.nc = n_heads, n_groups, dim
        self.n_head_channels, self.n_group_channels = dim // n_heads, dim // n_groups
        self.n_group_heads = n_heads // n_groups
        self.scale = self.n_head_channels**-0.5
        self.offset_range_factor = offset_range_factor
        gc = self.n_group_channels
        pad = ksize // 2 if ksize != stride else 0
        self.conv_offset = nn.Sequential(
            nn.Conv2d(gc, gc, ksize, stride, pad, groups=gc),
            nn.LayerNorm(gc),
            nn.GELU(),
            nn.Conv2d(gc, 2, 1, bias=False),
        )
        self.proj_q, self.proj_k = nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 1)
        self.proj_v, self.proj_out = nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 1)
        self.rpe_table = nn.Parameter(torch.zeros(n_heads, q_size[0] * 2 - 1, q_size[1] * 2 - 1))

    def offsets(self, q_off):
        conv, norm, act, proj = self.conv_offset
        t = conv(q_off)
        t = norm(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # LayerNormProxy
        return proj(act(t))

    def forward(self, x):
        b, c, h, w = x.shape
        g = self.n_groups
        q = self.proj_q(x)
        offset = self.offsets(q.reshape(b * g, self.n_group_channels, h, w))
        hk, wk = offset.shape[2:]
        n_sample = hk * wk
        offset_range = torch.tensor([1.0 / (hk - 1.0), 1.0 / (wk - 1.0)], dtype=x.dtype).reshape(1, 2, 1, 1)
        offset = offset.tanh().mul(offset_range).mul(self.offset_range_factor).permute(0, 2, 3, 1)
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, hk - 0.5, hk, dtype=x.dtype),
            torch.linspace(0.5, wk - 0.5, wk, dtype=x.dtype),
            indexing="ij",
        )
        ref = torch.stack((ref_y, ref_x), -1)
        ref[..., 1].div_(wk - 1.0).mul_(2.0).sub_(1.0)
        ref[..., 0].div_(hk - 1.0).mul_(2.0).sub_(1.0)
        pos = offset + ref[None].expand(b * g, -1, -1, -1)
        x_sampled = F.grid_sample(
            x.reshape(b * g, self.n_group_channels, h, w), pos[..., (1, 0)], mode="bilinear", align_corners=True
        ).reshape(b, c, 1, n_sample)
        qh = q.reshape(b * self.n_heads, self.n_head_channels, h * w)
        k = self.proj_k(x_sampled).reshape(b * self.n_heads, self.n_head_channels, n_sample)
        v = self.proj_v(x_sampled).reshape(b * self.n_heads, self.n_head_channels, n_sample)
        attn = torch.einsum("bcm,bcn->bmn", qh, k).mul(self.scale)
        gy, gx = torch.meshgrid(torch.arange(0.0, h, dtype=x.dtype), torch.arange(0.0, w, dtype=x.dtype), indexing="ij")
        q_grid = torch.stack((gy / (h - 1.0) * 2 - 1, gx / (w - 1.0) * 2 - 1), -1)[None].expand(b * g, -1, -1, -1)
        displacement = (
            q_grid.reshape(b * g, h * w, 2).unsqueeze(2) - pos.reshape(b * g, n_sample, 2).unsqueeze(1)
        ).mul(0.5)
        rpe = self.rpe_table[None].expand(b, -1, -1, -1).reshape(b * g, self.n_group_heads, *self.rpe_table.shape[1:])
        bias = F.grid_sample(rpe, displacement[..., (1, 0)], mode="bilinear", align_corners=True)
        attn = F.softmax(attn + bias.reshape(b * self.n_heads, h * w, n_sample), dim=2)
        out = torch.einsum("bmn,bcn->bcm", attn, v).reshape(b, c, h, w)
        return self.proj_out(out)


@pytest.mark.parametrize(
    ("hw", "stride"), [((9, 12), 1), ((20, 20), 1), ((10, 14), 2)], ids=["9x12", "at-table-size", "stride2"]
)
def test_dat_matches_the_official_deformable_attention(hw, stride):
    # In float64: an output moves by about (H - 1) / 2 times its gradient per grid unit of a sampling position,
    # so fp32 rounding of the positions alone gives differences near 1e-5.
    ref = randomise_(OfficialDAttention(32, (20, 20), stride=stride), std=0.3).double()
    ours = create("dat", 32, stride=stride, feat_size=20).double()
    load_weights(ours, ref)
    assert_same_output(ours, ref, torch.randn(2, 32, *hw, dtype=torch.float64), atol=1e-10, rtol=1e-10)


def test_dat_with_zero_offsets_samples_half_a_pixel_down_right_as_the_official_code():
    # Reference points (i + 0.5) / (H - 1) * 2 - 1 in align_corners units are pixel i + 0.5: each key is the
    # mean of a 2x2 block of x (zeros beyond the last row/column), a quirk of the official grid kept here.
    m = randomise_(create("dat", 8, num_heads=2, n_groups=1)).eval()
    nn.init.zeros_(m.conv_offset[3].weight)
    x = torch.randn(1, 8, 5, 6)
    _, sampled = capture(m, x, "proj_k")  # proj_k's output; its input is the sampled map
    xp = F.pad(x, (0, 1, 0, 1))
    want = (xp[..., :-1, :-1] + xp[..., 1:, :-1] + xp[..., :-1, 1:] + xp[..., 1:, 1:]) / 4
    torch.testing.assert_close(sampled, m.proj_k(want.reshape(1, 8, 1, 30)))
