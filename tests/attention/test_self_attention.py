"""Self-attention, first half (sagan, detr, mhsa, bottleneck, halo, lambda, ul_aattn, ul_psa).

References: timm's BottleneckAttn / HaloAttn / LambdaLayer and Ultralytics' ABlock / PSA with copied weights;
torch.nn.MultiheadAttention in DETR's post-norm layer; the SAGAN and BoTNet equations and DETR's sine
encoding re-stated by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from attention_helpers import assert_same_output, capture, randomise_
from timm.layers.bottleneck_attn import BottleneckAttn as TimmBottleneck
from timm.layers.halo_attn import HaloAttn as TimmHalo
from timm.layers.lambda_layer import LambdaLayer as TimmLambda
from torch import nn
from ultralytics.nn.modules.block import PSA, ABlock

from attnyolo.attention.transformer import sine_position_encoding
from attnyolo.registry import create

GLOBAL = ["sagan", "detr", "mhsa", "bottleneck", "lambda", "ul_psa"]
SOFTMAX_GLOBAL = ["sagan", "detr", "mhsa", "bottleneck", "ul_psa", "ul_aattn", "nonlocal", "nl", "danet"]


def _x(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- bottleneck vs timm.BottleneckAttn --------------------------------------------------------------------


def _bottleneck_pair(channels, feat_size, **kw):
    ref = TimmBottleneck(channels, feat_size=feat_size, **kw)
    ours = create("bottleneck", channels, feat_size=feat_size, **kw)
    randomise_(ref)
    rename = {"pos_embed.height_rel": "rel_height", "pos_embed.width_rel": "rel_width"}
    ours.load_state_dict({rename.get(k, k): v for k, v in ref.state_dict().items()})
    return ours, ref


@pytest.mark.parametrize("scale_pos_embed", [False, True])
@pytest.mark.parametrize("kw", [{}, {"num_heads": 2, "qk_ratio": 0.5}, {"dim_head": 8, "qkv_bias": True}])
def test_bottleneck_matches_timm_at_its_feat_size(kw, scale_pos_embed):
    ours, ref = _bottleneck_pair(32, (6, 5), scale_pos_embed=scale_pos_embed, **kw)
    assert_same_output(ours, ref, _x(2, 32, 6, 5), rtol=1e-4)


def test_bottleneck_on_a_smaller_map_uses_the_centre_of_its_relative_tables():
    ours = create("bottleneck", 16, feat_size=(8, 8))
    randomise_(ours)
    ref = TimmBottleneck(16, feat_size=(5, 3))
    ref.load_state_dict(
        {
            "qkv.weight": ours.qkv.weight,
            "pos_embed.height_rel": ours.rel_height[8 - 5 : 8 - 5 + 2 * 5 - 1],  # distances -4..4 of -7..7
            "pos_embed.width_rel": ours.rel_width[8 - 3 : 8 - 3 + 2 * 3 - 1],
        }
    )
    assert_same_output(ours, ref, _x(2, 16, 5, 3), rtol=1e-4)


def test_bottleneck_on_a_larger_map_clips_distances_to_the_edge_embedding():
    ours = create("bottleneck", 16, feat_size=(3, 2))
    randomise_(ours)
    h, w = 6, 4

    def clipped(table, s, n):  # distance d -> row clamp(d, -(s-1), s-1) + s-1, for d in -(n-1)..n-1
        return table[[min(max(d, -(s - 1)), s - 1) + s - 1 for d in range(-(n - 1), n)]]

    ref = TimmBottleneck(16, feat_size=(h, w))
    ref.load_state_dict(
        {
            "qkv.weight": ours.qkv.weight,
            "pos_embed.height_rel": clipped(ours.rel_height, 3, h),
            "pos_embed.width_rel": clipped(ours.rel_width, 2, w),
        }
    )
    assert_same_output(ours, ref, _x(1, 16, h, w), rtol=1e-4)


# ---- halo vs timm.HaloAttn --------------------------------------------------------------------------------


def _halo_pair(channels, **kw):
    ref = TimmHalo(channels, **kw)
    ours = create("halo", channels, **kw)
    randomise_(ref)
    nh, dqk, dv = ref.num_heads, ref.dim_head_qk, ref.dim_head_v
    kv = ref.kv.weight.reshape(nh, dqk + dv, channels, 1, 1)  # timm: per head [k | v]; ours: all k, then all v
    ours.load_state_dict(
        {
            "q.weight": ref.q.weight,
            "kv.weight": torch.cat([kv[:, :dqk].reshape(-1, channels, 1, 1), kv[:, dqk:].reshape(-1, channels, 1, 1)]),
            "rel_height": ref.pos_embed.height_rel,
            "rel_width": ref.pos_embed.width_rel,
        }
    )
    return ours, ref


@pytest.mark.parametrize(
    "kw,hw",
    [
        ({}, (16, 8)),  # the paper's block 8, halo 3, 8 heads
        ({"num_heads": 2, "block_size": 4, "halo_size": 2}, (8, 12)),
        ({"num_heads": 4, "block_size": 4, "halo_size": 1, "scale_pos_embed": True}, (4, 8)),
        ({"num_heads": 2, "block_size": 2, "halo_size": 0}, (4, 6)),
    ],
)
def test_halo_matches_timm_when_the_map_divides_into_blocks(kw, hw):
    ours, ref = _halo_pair(32, **kw)
    assert_same_output(ours, ref, _x(2, 32, *hw), rtol=1e-4)


@pytest.mark.parametrize("hw", [(13, 11), (3, 9), (1, 1)])
def test_halo_on_a_non_divisible_map_equals_timm_on_the_zero_padded_map_cropped(hw):
    ours, ref = _halo_pair(16, num_heads=2, block_size=4, halo_size=2)
    h, w = hw
    x = _x(2, 16, h, w)
    padded = F.pad(x, (0, -w % 4, 0, -h % 4))
    with torch.no_grad():
        y = ours.eval()(x)
        want = ref.eval()(padded)[:, :, :h, :w]
    assert y.shape == x.shape
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-5)


def test_halo_padding_leaves_blocks_whose_window_is_inside_the_image_unchanged():
    m = create("halo", 16, num_heads=2).eval()  # block 8, halo 3
    big = _x(1, 16, 16, 16)
    small = big[:, :, :13, :13]  # block (0, 0)'s window spans rows/cols -3..10: inside both
    with torch.no_grad():
        torch.testing.assert_close(m(small)[..., :8, :8], m(big)[..., :8, :8], rtol=1e-5, atol=1e-6)


def test_halo_a_pixel_reaches_only_the_blocks_whose_window_holds_it():
    bs, halo, (h, w), (pi, pj) = 4, 1, (13, 11), (5, 2)
    m = create("halo", 8, num_heads=2, block_size=bs, halo_size=halo).eval()
    x = _x(1, 8, h, w)
    x2 = x.clone()
    x2[..., pi, pj] += 1.0
    with torch.no_grad():
        changed = (m(x2) - m(x)).abs().amax(dim=1)[0] > 1e-6
    expected = torch.zeros(h, w, dtype=torch.bool)
    for i in range(h):
        for j in range(w):
            r0, c0 = i // bs * bs - halo, j // bs * bs - halo
            expected[i, j] = r0 <= pi < r0 + bs + 2 * halo and c0 <= pj < c0 + bs + 2 * halo
    assert torch.equal(changed, expected)


# ---- lambda vs timm.LambdaLayer ---------------------------------------------------------------------------


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("kw", [{"r": 9}, {"r": 5, "num_heads": 2, "dim_head": 8}, {"r": 3, "dim_head": None}])
def test_lambda_matches_timm(kw, train):
    ref = TimmLambda(32, **kw)
    ours = create("lambda", 32, **kw)
    randomise_(ref)
    sd = ref.state_dict()
    sd["conv_lambda.weight"] = sd["conv_lambda.weight"][..., 0]  # (k, 1, r, r, 1) 3D conv == per-channel 2D conv
    ours.load_state_dict(sd)
    assert_same_output(ours, ref, _x(2, 32, 7, 6), train=train, rtol=1e-4)


def test_lambda_default_scope_is_the_papers_23():
    assert create("lambda", 32).conv_lambda.kernel_size == (23, 23)


# ---- Ultralytics ABlock (YOLOv12 area attention) and PSA (YOLOv10) ----------------------------------------


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(
    "channels,area,hw",
    [(64, 4, (8, 6)), (64, 1, (5, 7)), (96, 4, (5, 4)), (64, 2, (3, 6)), (40, 4, (4, 4))],
)
def test_ul_aattn_matches_ultralytics_ablock(channels, area, hw, train):
    ref = ABlock(channels, max(channels // 32, 1), 1.2, area)
    ours = create("ul_aattn", channels, area=area)
    randomise_(ref)
    ours.load_state_dict(ref.state_dict())
    assert_same_output(ours, ref, _x(2, channels, *hw), train=train, rtol=1e-4)


def test_ul_aattn_non_divisible_map_masks_the_padded_keys_of_the_last_area():
    m = create("ul_aattn", 32, area=4).eval()  # N = 5*2 = 10 tokens -> runs of 3: 3, 3, 3, 1 (+2 padding)
    y, w = capture(m, _x(2, 32, 5, 2))
    assert y.shape == (2, 32, 5, 2) and torch.isfinite(y).all()
    assert w.shape == (2, 1, 4, 3, 3)  # (B, heads, areas, run, run)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 1, 4, 3))
    assert torch.all(w[:, :, 3, :, 1:] == 0)  # the last area's two padded keys
    assert torch.all(w[:, :, :3] > 0)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("channels,hw", [(64, (5, 7)), (256, (6, 4)), (260, (3, 3))])
def test_ul_psa_matches_ultralytics_psa(channels, hw, train):
    ref = PSA(channels, channels)
    ours = create("ul_psa", channels)
    randomise_(ref)
    ours.load_state_dict(ref.state_dict())
    assert_same_output(ours, ref, _x(2, channels, *hw), train=train, rtol=1e-4)


# ---- SAGAN ------------------------------------------------------------------------------------------------


def test_sagan_starts_as_the_identity():
    m = create("sagan", 32)
    x = _x(2, 32, 6, 5)
    assert m.gamma.item() == 0.0
    assert torch.equal(m(x), x)


def test_sagan_follows_equations_1_to_3():
    m = create("sagan", 16)
    randomise_(m)
    x = _x(2, 16, 4, 3)
    f, g, hx = m.query(x).flatten(2), m.key(x).flatten(2), m.value(x).flatten(2)  # (B, c, N)
    beta = torch.einsum("bci,bcj->bij", f, g).softmax(dim=-1)  # beta[j over i]: row = output position
    o = torch.einsum("bij,bcj->bci", beta, hx).reshape(x.shape)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.gamma * o + x, rtol=1e-4, atol=1e-5)


def test_sagan_query_key_width_is_c_over_8():
    m = create("sagan", 256)
    assert m.query.out_channels == m.key.out_channels == 32 and m.value.out_channels == 256


# ---- BoTNet MHSA (Figure 4) -------------------------------------------------------------------------------


def test_mhsa_follows_figure_4_at_its_feat_size():
    m = create("mhsa", 16, num_heads=2, feat_size=(3, 4))
    randomise_(m)
    x = _x(2, 16, 3, 4)
    nh, d, n = 2, 8, 12

    def heads(t):  # (B, C, H, W) -> (B, heads, N, d)
        return t.reshape(2, nh, d, n).transpose(-1, -2)

    q, k, v = heads(m.query(x)), heads(m.key(x)), heads(m.value(x))
    r = (m.rel_h[:, :, :, None] + m.rel_w[:, :, None, :]).reshape(nh, d, n).transpose(-1, -2)  # R_h + R_w
    logits = (q @ k.transpose(-1, -2) + q @ r.transpose(-1, -2)) / math.sqrt(d)
    want = (logits.softmax(-1) @ v).transpose(-1, -2).reshape(2, 16, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(m(x), want, rtol=1e-4, atol=1e-5)


def test_mhsa_interpolates_its_position_encodings_linearly_to_other_sizes():
    m = create("mhsa", 4, num_heads=1, feat_size=(2, 1))
    with torch.no_grad():
        m.rel_h.copy_(torch.tensor([[[1.0, 5.0]]] * 4).reshape(1, 4, 2))
        m.rel_w.zero_()
        r = m.position_encoding(4, 1)[0, :, 0]  # rows of a 4x1 map, channel 0
    # align_corners=False: sample points at -0.25, 0.25, 0.75, 1.25 of [1, 5], clamped at the ends
    torch.testing.assert_close(r, torch.tensor([1.0, 2.0, 4.0, 5.0]))


# ---- DETR encoder layer -----------------------------------------------------------------------------------


def test_sine_position_encoding_matches_hand_computed_entries():
    pos = sine_position_encoding(2, 3, 8)  # 4 row features, 4 column features
    two_pi = 2 * math.pi
    y0, x2 = 1 / 2 * two_pi, 3 / 3 * two_pi  # row 0 of 2, column 2 of 3: (i+1)/n * 2pi
    assert pos.shape == (8, 2, 3)
    assert pos[0, 0, 1].item() == pytest.approx(math.sin(y0), abs=1e-5)  # sin(y / 10000^0)
    assert pos[1, 0, 1].item() == pytest.approx(math.cos(y0), abs=1e-5)  # cos(y / 10000^0)
    assert pos[3, 0, 1].item() == pytest.approx(math.cos(y0 / 100), abs=1e-5)  # cos(y / 10000^(2/4))
    assert pos[4, 1, 2].item() == pytest.approx(math.sin(x2), abs=1e-5)
    assert pos[6, 1, 2].item() == pytest.approx(math.sin(x2 / 100), abs=1e-5)


def _detr_sine_reference(h: int, w: int, c: int) -> torch.Tensor:
    """DETR's PositionEmbeddingSine(num_pos_feats=c/2, normalize=True), re-stated with cumsum/stack/flatten."""
    not_mask = torch.ones(1, h, w)
    y, x = not_mask.cumsum(1), not_mask.cumsum(2)
    y, x = y / (y[:, -1:, :] + 1e-6) * 2 * math.pi, x / (x[:, :, -1:] + 1e-6) * 2 * math.pi
    n = c // 2
    dim_t = 10000 ** (2 * (torch.arange(n) // 2) / n)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)[0]


def test_sine_position_encoding_equals_detrs_code():
    torch.testing.assert_close(sine_position_encoding(5, 7, 32), _detr_sine_reference(5, 7, 32))


@pytest.mark.parametrize("observed", [False, True])
def test_detr_layer_matches_multihead_attention_in_detrs_post_norm_layer(observed):
    c, h, w = 32, 5, 6
    m = create("detr", c, num_heads=4)
    randomise_(m)
    mha = nn.MultiheadAttention(c, 4, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([m.q_proj.weight, m.k_proj.weight, m.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([m.q_proj.bias, m.k_proj.bias, m.v_proj.bias]))
        mha.out_proj.load_state_dict(m.out_proj.state_dict())
    x = _x(2, c, h, w)
    src = x.flatten(2).transpose(1, 2)
    qk = src + _detr_sine_reference(h, w, c).flatten(1).T  # DETR: q = k = with_pos_embed(src, pos), v = src
    src = m.norm1(src + mha(qk, qk, src, need_weights=False)[0])
    src = m.norm2(src + m.linear2(F.relu(m.linear1(src))))
    want = src.transpose(1, 2).reshape(x.shape)
    if observed:
        m.capture_attention = True
    with torch.no_grad():
        torch.testing.assert_close(m(x), want, rtol=1e-4, atol=1e-5)


def test_detr_feedforward_width_defaults_to_4c():
    assert create("detr", 64).linear1.out_features == 256
    assert create("detr", 64, dim_feedforward=2048).linear1.out_features == 2048


# ---- global receptive field, explicit vs fused attention, memory budget -----------------------------------


@pytest.mark.parametrize("name", GLOBAL)
def test_one_corner_pixel_changes_the_output_everywhere(name):
    m = create(name, 32).eval().double()  # float64: no weight underflows to exactly zero
    if name == "sagan":
        m.gamma.data.fill_(1.0)
    x = _x(1, 32, 7, 9).double()
    x2 = x.clone()
    x2[..., 0, 0] += 1.0
    with torch.no_grad():
        changed = (m(x2) - m(x)).abs().amax(dim=1)[0]
    assert (changed > 1e-7).all(), f"unchanged positions: {(changed <= 1e-7).nonzero().tolist()}"


@pytest.mark.parametrize("name", SOFTMAX_GLOBAL)
def test_a_hook_on_gate_sees_weights_and_leaves_the_output_unchanged(name):
    m = create(name, 64).eval()
    randomise_(m)
    x = _x(2, 64, 6, 5)
    with torch.no_grad():
        fused = m(x)
    explicit, w = capture(m, x)
    torch.testing.assert_close(explicit, fused, rtol=1e-4, atol=1e-5)
    assert w.shape[0] == 2 and w.shape[-1] == w.shape[-2]
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


@pytest.mark.parametrize("name", ["sagan", "detr", "mhsa", "ul_psa", "nonlocal", "nl", "danet"])
def test_memory_limit_applies_only_when_the_weights_are_materialised(name):
    m = create(name, 64, memory_limit_mb=0.001).eval()  # a 6x5 map: 30x30 floats per head = 0.0034 MiB
    x = _x(1, 64, 6, 5)
    with torch.no_grad():
        assert m(x).shape == x.shape  # fused kernel, no matrix
        m.capture_attention = True
        with pytest.raises(ValueError, match="memory_limit_mb"):
            m(x)


def test_bottleneck_refuses_an_attention_matrix_over_the_limit_before_allocating():
    m = create("bottleneck", 16, memory_limit_mb=100)
    x = torch.zeros(1, 16, 80, 80)  # 4 heads x 6400^2 fp32 = 625 MiB
    with pytest.raises(ValueError, match=r"625 MiB.*memory_limit_mb=100"):
        m(x)


# ---- bad hyper-parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,channels,kw,param",
    [
        ("bottleneck", 30, {}, "channels"),
        ("mhsa", 30, {}, "channels"),
        ("detr", 20, {}, "channels"),
        ("halo", 12, {}, "channels"),
        ("lambda", 6, {}, "channels"),
        ("ul_psa", 3, {}, "channels"),
        ("ul_psa", 258, {}, "channels"),  # 129 attention channels, 2 heads
        ("ul_aattn", 4, {"num_heads": 8}, "channels"),
        ("detr", 32, {"num_heads": 0}, "num_heads"),
        ("halo", 32, {"block_size": 0}, "block_size"),
        ("halo", 32, {"halo_size": -1}, "halo_size"),
        ("lambda", 32, {"r": 4}, "r"),
        ("mhsa", 32, {"feat_size": (0, 4)}, "feat_size"),
        ("bottleneck", 32, {"feat_size": (2, 3, 4)}, "feat_size"),
        ("detr", 32, {"dropout": 1.5}, "dropout"),
        ("ul_aattn", 32, {"area": 0}, "area"),
        ("sagan", 32, {"memory_limit_mb": 0}, "memory_limit_mb"),
        ("sagan", 32, {"rd_ratio": -1.0}, "rd_ratio"),
    ],
)
def test_bad_hyperparameter_raises_value_error_naming_it(name, channels, kw, param):
    with pytest.raises(ValueError, match=param):
        create(name, channels, **kw)
