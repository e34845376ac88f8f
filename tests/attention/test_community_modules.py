"""The community's attention kinds (soca, nam, parnet, seam, s2, axial, acmix) against independent references.

``axial`` is compared with lucidrains' ``AxialImageTransformer`` (the ``axial-attention`` package, the code
community YAMLs import) with the same weights copied in. The others have official code that is not packaged,
so each ``_..._by_loops`` / ``_..._restated`` function below re-states the authors' forward (read from their
repositories, named in each module's spec) one image, channel, position or window at a time, independently of
the vectorised code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from attention_helpers import capture, load_weights, n_params, randomise_
from torch import nn

from attnyolo.attention.acmix import reflect_index
from attnyolo.attention.second_order import newton_schulz_sqrt
from attnyolo.registry import create


def inputs(channels: int, h: int = 5, w: int = 6, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


def bn_eval(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm in eval mode, written out: ``(x - mean) / sqrt(var + eps) * weight + bias``."""
    shape = (1, -1, 1, 1)
    scale = (bn.running_var + bn.eps).rsqrt() * bn.weight
    return (x - bn.running_mean.reshape(shape)) * scale.reshape(shape) + bn.bias.reshape(shape)


def _sigmoid(v: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-v))


# ---- soca: second-order channel attention ------------------------------------------------------------------


def _soca_restated(x: torch.Tensor, m: nn.Module, iterations: int) -> torch.Tensor:
    """SAN's SOCA as the official code: Covpool with I_hat, Sqrtm with Y/Z arrays, mean over dim 1, conv_du."""
    b, c, h, w = x.shape
    s = h * w
    i_hat = (-1.0 / s / s) * torch.ones(s, s, dtype=torch.float64) + (1.0 / s) * torch.eye(s, dtype=torch.float64)
    out = torch.empty_like(x)
    for n in range(b):
        feats = x[n].reshape(c, s).double()
        sigma = feats @ i_hat @ feats.t()  # Eq. 5
        eye3 = 3.0 * torch.eye(c, dtype=torch.float64)
        norm = sum(sigma[i, i] for i in range(c))  # trace (the official normA)
        a = sigma / norm
        ys, zs = [None] * iterations, [None] * iterations
        zy = 0.5 * (eye3 - a)
        ys[0], zs[0] = a @ zy, zy
        for i in range(1, iterations - 1):
            zy = 0.5 * (eye3 - zs[i - 1] @ ys[i - 1])
            ys[i], zs[i] = ys[i - 1] @ zy, zy @ zs[i - 1]
        root = 0.5 * ys[iterations - 2] @ (eye3 - zs[iterations - 2] @ ys[iterations - 2])
        root = root * math.sqrt(norm)
        z = torch.tensor([sum(root[i, j] for i in range(c)) / c for j in range(c)], dtype=torch.float64)
        hidden = torch.relu(m.fc1.weight.double().flatten(1) @ z + m.fc1.bias.double())
        weights = _sigmoid(m.fc2.weight.double().flatten(1) @ hidden + m.fc2.bias.double())
        out[n] = (x[n].double() * weights[:, None, None]).to(x.dtype)
    return out


def test_soca_matches_the_official_forward_restated():
    m = randomise_(create("soca", 32)).eval()
    x = inputs(32, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _soca_restated(x, m, iterations=5), rtol=1e-4, atol=1e-5)


def test_soca_newton_schulz_converges_to_the_matrix_square_root():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 6, 200, generator=g, dtype=torch.float64)
    sigma = feats @ feats.transpose(1, 2) / 200  # well conditioned
    vals, vecs = torch.linalg.eigh(sigma)
    exact = vecs @ torch.diag_embed(vals.sqrt()) @ vecs.transpose(1, 2)
    torch.testing.assert_close(newton_schulz_sqrt(sigma, 30), exact, rtol=1e-8, atol=1e-10)


def test_soca_defaults_are_the_papers_r16_and_five_iterations():
    m = create("soca", 64)
    assert m.iterations == 5 and m.fc1.out_channels == 4
    assert n_params(m) == 2 * 64 * 4 + 4 + 64  # two 1x1 convs with bias


def test_soca_constant_map_has_a_zero_descriptor_not_nan():
    m = randomise_(create("soca", 8)).eval()
    x = torch.ones(1, 8, 4, 4)
    y, weights = capture(m, x)
    torch.testing.assert_close(
        weights.flatten(), _sigmoid(m.fc2.bias + m.fc2.weight.flatten(1) @ torch.relu(m.fc1.bias))
    )
    assert torch.isfinite(y).all()


# ---- nam: normalisation-based attention ---------------------------------------------------------------------


def test_nam_matches_the_official_channel_att_by_channels():
    m = randomise_(create("nam", 6)).eval()
    x = inputs(6)
    gamma = m.bn.weight.detach()
    expected = torch.empty_like(x)
    total = sum(abs(g) for g in gamma.tolist())
    normed = bn_eval(x, m.bn)
    for c in range(6):
        w_c = abs(gamma[c].item()) / total  # Eq. 2's w_i = gamma_i / sum_j gamma_j
        expected[:, c] = x[:, c] * _sigmoid(w_c * normed[:, c])
    with torch.no_grad():
        torch.testing.assert_close(m(x), expected)


def test_nam_weight_factor_is_constant_in_backward_as_the_official_code():
    m = randomise_(create("nam", 6)).train()
    x = inputs(6)
    m(x).square().sum().backward()
    ours = m.bn.weight.grad.clone()
    # the official code: w = |gamma.data| / sum |gamma.data|, gamma trains through the BatchNorm only
    gamma = m.bn.weight.detach().clone().requires_grad_()
    normed = F.batch_norm(x, None, None, gamma, m.bn.bias.detach(), training=True, eps=m.bn.eps)
    w = (m.bn.weight.detach().abs() / m.bn.weight.detach().abs().sum()).reshape(1, -1, 1, 1)
    (x * torch.sigmoid(w * normed)).square().sum().backward()
    torch.testing.assert_close(ours, gamma.grad)


def test_nam_parameters_are_the_batchnorms_scale_and_shift():
    assert n_params(create("nam", 64)) == 2 * 64


# ---- parnet: RepVGG-SSE block ---------------------------------------------------------------------------------


def test_parnet_matches_the_official_repvgg_sse_block_restated():
    m = randomise_(create("parnet", 8)).eval()
    x = inputs(8)
    with torch.no_grad():
        dense = bn_eval(F.conv2d(x, m.conv3x3[0].weight, padding=1), m.conv3x3[1])  # rbr_dense
        one = bn_eval(F.conv2d(x, m.conv1x1[0].weight), m.conv1x1[1])  # rbr_1x1
        ident = bn_eval(x, m.identity)  # rbr_identity
        pooled = ident.mean((2, 3))  # SE1: avg pool, 1x1 conv without bias, sigmoid (ver 1)
        se = _sigmoid(torch.einsum("oc,bc->bo", m.sse.weight.flatten(1), pooled))[..., None, None]
        expected = F.silu(dense + one + ident * se)
        torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)


def test_parnet_parameter_count_by_hand():
    c = 64
    # 3x3 and 1x1 bias-free convs, SSE's bias-free 1x1 conv, three BatchNorms (weight + bias)
    assert n_params(create("parnet", c)) == 9 * c * c + c * c + c * c + 3 * 2 * c


# ---- seam: YOLO-FaceV2 --------------------------------------------------------------------------------------


def test_seam_matches_the_official_forward_restated():
    m = randomise_(create("seam", 16)).eval()
    x = inputs(16)
    blk = m.blocks[0]
    with torch.no_grad():
        y = x + bn_eval(F.gelu(F.conv2d(x, blk.dw.weight, blk.dw.bias, padding=1, groups=16)), blk.dw_bn)
        y = bn_eval(F.gelu(F.conv2d(y, blk.pw.weight, blk.pw.bias)), blk.pw_bn)
        z = y.mean((2, 3))
        s = _sigmoid(torch.relu(z @ m.fc1.weight.t()) @ m.fc2.weight.t())
        expected = x * torch.exp(s)[..., None, None]
        torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)


def test_seam_weights_lie_between_one_and_e():
    m = randomise_(create("seam", 16)).eval()
    _, weights = capture(m, inputs(16))
    assert (weights > 1).all() and (weights < math.e).all()


def test_seam_parameter_count_by_hand():
    c, r = 64, 16
    per_block = (9 * c + c) + 2 * c + (c * c + c) + 2 * c  # dw conv, BN, pw conv, BN
    assert n_params(create("seam", c)) == per_block + 2 * c * (c // r)
    assert n_params(create("seam", c, depth=2)) == 2 * per_block + 2 * c * (c // r)


# ---- s2: S²-MLPv2 split attention -----------------------------------------------------------------------------


def _shift_by_loops(x: torch.Tensor, first: str) -> torch.Tensor:
    """S²-MLP Algorithm 1 on one image ``(C, H, W)``: in-place slice assignments, the edge rows keep their values."""
    c, h, w = x.shape
    out = x.clone()
    quarters = [(0, c // 4), (c // 4, c // 2), (c // 2, c * 3 // 4), (c * 3 // 4, c)]
    moves = [("h", 1), ("h", -1), ("w", 1), ("w", -1)] if first == "h" else [("w", 1), ("w", -1), ("h", 1), ("h", -1)]
    for (lo, hi), (axis, step) in zip(quarters, moves, strict=True):
        for ch in range(lo, hi):
            for i in range(h):
                for j in range(w):
                    si, sj = i, j
                    if axis == "h" and 0 <= i - step < h:
                        si = i - step
                    if axis == "w" and 0 <= j - step < w:
                        sj = j - step
                    out[ch, i, j] = x[ch, si, sj]
    return out


def test_s2_matches_the_papers_equations_by_loops():
    c = 6  # quarters of 1, 2, 1, 2 channels: uneven split as the pseudo-code's integer division
    m = randomise_(create("s2", c)).eval()
    x = inputs(c, 4, 5)
    expected = torch.empty_like(x)
    with torch.no_grad():
        for n in range(x.shape[0]):
            e = torch.einsum("oc,chw->ohw", m.mlp1.weight.flatten(1), x[n]) + m.mlp1.bias[:, None, None]
            branches = [_shift_by_loops(e[:c], "h"), _shift_by_loops(e[c : 2 * c], "w"), e[2 * c :]]
            a = sum(b.sum((1, 2)) for b in branches)  # a = sum_k 1^T X_k
            a_hat = F.gelu(a @ m.attn_fc1.weight.t()) @ m.attn_fc2.weight.t()
            a_hat = a_hat.reshape(3, c)
            a_bar = torch.exp(a_hat) / torch.exp(a_hat).sum(0, keepdim=True)  # softmax over the 3 branches
            mixed = sum(a_bar[k][:, None, None] * branches[k] for k in range(3))
            expected[n] = torch.einsum("oc,chw->ohw", m.mlp2.weight.flatten(1), mixed) + m.mlp2.bias[:, None, None]
        torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)


def test_s2_parameter_count_by_hand():
    c = 512
    # MLP1 C->3C and MLP2 C->C with bias; split attention C->C->3C without bias
    assert n_params(create("s2", c)) == (3 * c * c + 3 * c) + (c * c + c) + (c * c + 3 * c * c)


# ---- axial: AxialImageTransformer block --------------------------------------------------------------------


_AXIAL_RENAME = {
    "layers.blocks.0.f.net.fn.fn": "attn_h",
    "layers.blocks.0.f.net.fn": "attn_h",
    "layers.blocks.0.g.net.fn.fn": "attn_w",
    "layers.blocks.0.g.net.fn": "attn_w",
    "layers.blocks.1.f.net": "ff1",
    "layers.blocks.1.g.net": "ff2",
    # reversible=False keeps the blocks as (attn_h, attn_w), (ff1, ff2) ModuleLists
    "layers.blocks.0.0.fn.fn": "attn_h",
    "layers.blocks.0.0.fn": "attn_h",
    "layers.blocks.0.1.fn.fn": "attn_w",
    "layers.blocks.0.1.fn": "attn_w",
    "layers.blocks.1.0": "ff1",
    "layers.blocks.1.1": "ff2",
}


@pytest.mark.parametrize("reversible", [True, False], ids=["reversible", "sequential"])
def test_axial_matches_lucidrains_axial_image_transformer(reversible: bool):
    axial_attention = pytest.importorskip("axial_attention")
    torch.manual_seed(0)
    ref = randomise_(axial_attention.AxialImageTransformer(16, depth=1, heads=8, reversible=reversible), std=0.2)
    ours = create("axial", 16, reversible=reversible)
    load_weights(ours, ref, _AXIAL_RENAME)
    x = inputs(16, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), rtol=1e-5, atol=1e-5)
        ours.capture_attention = True  # the explicit softmax path gives the same output
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_axial_gate_sees_one_softmax_per_axis():
    m = create("axial", 16, heads=4)
    seen = []
    m.gate.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        m(inputs(16, 5, 7, batch=2))
    assert seen == [(2 * 7, 4, 5, 5), (2 * 5, 4, 7, 7)]  # along H for each column, then along W for each row


# ---- acmix -------------------------------------------------------------------------------------------------------


def _reflect(i: int, n: int) -> int:
    while not 0 <= i < n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def _acmix_by_windows(x: torch.Tensor, m: nn.Module) -> torch.Tensor:
    """The official ACmix forward at stride 1, one window of one head at a time."""
    b, c, h, w = x.shape
    head, d, kk, kc = m.head, m.head_dim, m.kernel_att, m.kernel_conv
    q, k, v = (F.conv2d(x, conv.weight, conv.bias) for conv in (m.conv1, m.conv2, m.conv3))
    loc_w = torch.linspace(-1.0, 1.0, w).unsqueeze(0).repeat(h, 1)
    loc_h = torch.linspace(-1.0, 1.0, h).unsqueeze(1).repeat(1, w)
    pe = F.conv2d(torch.stack([loc_w, loc_h])[None], m.conv_p.weight, m.conv_p.bias)[0]  # (d, H, W)
    att_out = torch.empty(b, c, h, w)
    pad = kk // 2
    for n in range(b):
        for g in range(head):
            qg, kg, vg = (t[n, g * d : (g + 1) * d] for t in (q, k, v))
            for i in range(h):
                for j in range(w):
                    logits, values = [], []
                    for di in range(kk):
                        for dj in range(kk):
                            si, sj = _reflect(i + di - pad, h), _reflect(j + dj - pad, w)
                            rel = kg[:, si, sj] + pe[:, i, j] - pe[:, si, sj]
                            logits.append((qg[:, i, j] * d**-0.5 * rel).sum())
                            values.append(vg[:, si, sj])
                    weights = torch.softmax(torch.stack(logits), 0)
                    att_out[n, g * d : (g + 1) * d, i, j] = sum(
                        wt * val for wt, val in zip(weights, values, strict=True)
                    )
    # convolution path: fc over the 3*head (q, k, v head) features, regrouped per head_dim, shift conv
    stacked = torch.cat([t.reshape(b, head, d, h * w) for t in (q, k, v)], 1)  # (B, 3*head, d, HW)
    f_all = torch.einsum("om,bmdp->bodp", m.fc.weight.flatten(1), stacked)  # (B, kc², d, HW)
    f_conv = f_all.permute(0, 2, 1, 3).reshape(b, d * kc * kc, h, w)
    conv_out = F.conv2d(f_conv, m.dep_conv.weight, None, padding=kc // 2, groups=d)
    return m.rate1 * att_out + m.rate2 * conv_out


@pytest.mark.parametrize("hw", [(5, 6), (2, 3)], ids=["map", "smaller_than_the_window"])
def test_acmix_matches_the_official_forward_by_windows(hw: tuple[int, int]):
    m = randomise_(create("acmix", 8, kernel_att=5), std=0.3).eval()
    x = inputs(8, *hw)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _acmix_by_windows(x, m), rtol=1e-4, atol=1e-5)


def test_acmix_reflection_equals_reflection_pad_where_that_is_defined():
    x = torch.randn(1, 2, 6, 9)
    for pad in (1, 3, 5):
        rows, cols = reflect_index(6, pad, x.device), reflect_index(9, pad, x.device)
        torch.testing.assert_close(x[:, :, rows][:, :, :, cols], nn.ReflectionPad2d(pad)(x))


def test_acmix_initialisation_is_the_official_one():
    m = create("acmix", 16)
    assert m.rate1.item() == 0.5 and m.rate2.item() == 0.5
    assert m.dep_conv.bias is None  # the official reset_parameters sets it to None
    shift = torch.zeros(9, 3, 3)
    for i in range(9):
        shift[i, i // 3, i % 3] = 1.0
    assert torch.equal(m.dep_conv.weight, shift.expand(16, -1, -1, -1))


def test_acmix_parameter_count_by_hand():
    c, head, k_conv = 64, 4, 3
    d = c // head
    qkv = 3 * (c * c + c)
    pos = 2 * d + d
    fc = 3 * head * k_conv**2
    dep = c * k_conv**2 * k_conv**2  # groups=d: each output sees k² inputs of k x k
    assert n_params(create("acmix", c)) == qkv + pos + fc + dep + 2
