"""Self-attention family, second half: nl, nonlocal, bat, cc, danet, a2.

References: timm's ``NonLocalAttn`` / ``BatNonLocalAttn`` with the same weights copied in; for the modules
without an installable reference (criss-cross, DANet, A²), the paper's equations written out independently
(explicit per-position loops or ``einsum`` in float64).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from attention_helpers import capture, load_weights, randomise_
from timm.layers.non_local_attn import BatNonLocalAttn, NonLocalAttn
from torch import nn

from attnyolo.attention.nonlocal_family import _adaptive_max_bins
from attnyolo.registry import available, create, describe

NAMES = ["nl", "nonlocal", "bat", "cc", "danet", "a2"]


# ---- helpers -------------------------------------------------------------------------------------------


def changed_positions(module: nn.Module, x: torch.Tensor, pixel: tuple[int, int]) -> torch.Tensor:
    """Bool map ``(H, W)``: where the output of image 0 changes when one input pixel (all channels) changes."""
    x2 = x.clone()
    x2[0, :, pixel[0], pixel[1]] += 3.0
    with torch.no_grad():
        diff = (module(x2) - module(x))[0].abs().amax(dim=0)
    return diff > 1e-12


NL_KEYS = {"t": "theta", "p": "phi", "g": "g", "z": "w", "norm": "norm"}
BAT_KEYS = {
    "conv1.conv": "reduce.0",
    "conv1.bn": "reduce.1",
    "ba.conv1.conv": "embed.0",
    "ba.conv1.bn": "embed.1",
    "ba.conv_p": "conv_p",
    "ba.conv_q": "conv_q",
    "ba.conv2.conv": "mix.0",
    "ba.conv2.bn": "mix.1",
    "conv2.conv": "expand.0",
    "conv2.bn": "expand.1",
}


# ---- registry ------------------------------------------------------------------------------------------


def test_names_are_registered_as_self_attention():
    assert set(NAMES) <= set(available("self_attention"))


def test_nl_is_the_nonlocal_block_with_timm_defaults():
    nl, paper = describe("nl"), describe("nonlocal")
    assert nl.cls is paper.cls
    assert nl.defaults["rd_ratio"] == 1 / 8 and nl.defaults["use_scale"] is True
    assert paper.defaults["rd_ratio"] == 1 / 2 and paper.defaults["use_scale"] is False


# ---- non-local: reference equivalence ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shape", [(2, 64, 7, 9), (2, 40, 5, 3), (3, 16, 1, 1)], ids=["7x9", "5x3", "1x1"])
def test_nl_matches_timm_nonlocalattn_with_copied_weights(shape, mode):
    c = shape[1]
    ref = randomise_(NonLocalAttn(c)).train(mode == "train")
    ours = create("nl", c).train(mode == "train")
    load_weights(ours, ref, NL_KEYS)
    x = torch.randn(*shape)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_nonlocal_defaults_match_timm_configured_as_the_paper():
    # the paper's block: inner width C/2, no logit scaling
    ref = randomise_(NonLocalAttn(48, rd_ratio=1 / 2, rd_divisor=1, use_scale=False)).eval()
    ours = create("nonlocal", 48).eval()
    assert ours.theta.out_channels == 24
    load_weights(ours, ref, NL_KEYS)
    x = torch.randn(2, 48, 6, 11)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_nonlocal_sub_sample_pools_phi_and_g_as_in_the_paper():
    m = randomise_(create("nonlocal", 8, sub_sample=True)).eval().double()
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    q = m.theta(x).flatten(2)  # (B, c, N)
    k = F.max_pool2d(m.phi(x), 2, 2, ceil_mode=True).flatten(2)  # (B, c, M), M = 3*4
    v = F.max_pool2d(m.g(x), 2, 2, ceil_mode=True).flatten(2)
    assert k.shape[-1] == 12
    attn = torch.softmax(torch.einsum("bcn,bcm->bnm", q, k), dim=-1)
    y = torch.einsum("bnm,bcm->bcn", attn, v).reshape(2, -1, 5, 7)
    torch.testing.assert_close(m(x), x + m.norm(m.w(y)))


@pytest.mark.parametrize("name", ["nl", "nonlocal", "cc", "danet"])
def test_zero_initialised_modules_start_as_the_identity(name):
    m = create(name, 32).train()
    x = torch.randn(2, 32, 6, 5)
    assert torch.equal(m(x), x)


# ---- global receptive field ----------------------------------------------------------------------------


# Moderate random weights keep the softmax away from saturation, where a far pixel's weight (say 1e-30)
# would be mathematically non-zero but below float64 resolution of the output.


def _nonlocal_live(name):
    m = randomise_(create(name, 16), std=0.1).eval().double()
    nn.init.ones_(m.norm.weight)  # a zero BN scale would hide the attention path
    return m


def _danet_position_only():
    m = randomise_(create("danet", 16), std=0.1).eval().double()
    with torch.no_grad():
        m.gamma_pos.fill_(1.0)
        m.gamma_ch.fill_(0.0)  # only the position attention can spread the change
    return m


@pytest.mark.parametrize(
    "factory",
    [
        lambda: _nonlocal_live("nonlocal"),
        lambda: _nonlocal_live("nl"),
        _danet_position_only,
        lambda: randomise_(create("a2", 16), std=0.1).eval().double(),
    ],
    ids=["nonlocal", "nl", "danet-position", "a2"],
)
def test_one_far_pixel_changes_the_output_at_every_position(factory):
    torch.manual_seed(0)
    m = factory()
    x = torch.randn(2, 16, 9, 7, dtype=torch.float64)
    assert changed_positions(m, x, (8, 6)).all()


def test_danet_position_attention_is_what_spreads_the_change():
    # with both gammas at 0 the block is the identity: one pixel changes one output position only
    m = create("danet", 16).eval().double()
    x = torch.randn(1, 16, 6, 5, dtype=torch.float64)
    changed = changed_positions(m, x, (5, 4))
    assert changed.sum() == 1 and changed[5, 4]


# ---- criss-cross ---------------------------------------------------------------------------------------


def _cc(recurrence: int) -> nn.Module:
    m = randomise_(create("cc", 16, recurrence=recurrence), std=0.1).eval().double()
    with torch.no_grad():
        m.gamma.fill_(1.0)
    return m


def test_criss_cross_once_reaches_exactly_the_row_and_column():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 7, 9, dtype=torch.float64)
    changed = changed_positions(_cc(1), x, (2, 6))
    expected = torch.zeros(7, 9, dtype=torch.bool)
    expected[2, :] = True
    expected[:, 6] = True
    assert torch.equal(changed, expected)


def test_criss_cross_twice_reaches_every_position():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 7, 9, dtype=torch.float64)
    assert changed_positions(_cc(2), x, (2, 6)).all()


def test_criss_cross_matches_a_per_position_loop_over_the_h_plus_w_minus_1_neighbours():
    torch.manual_seed(0)
    m = randomise_(create("cc", 16, recurrence=1)).double()
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)
    q, k, v = m.query(x), m.key(x), m.value(x)
    b, _, h, w = x.shape
    expected = x.clone()
    for n in range(b):
        for i in range(h):
            for j in range(w):
                # the column without (i, j) itself, then the whole row: H + W - 1 positions
                cells = [(r, j) for r in range(h) if r != i] + [(i, c) for c in range(w)]
                keys = torch.stack([k[n, :, r, c] for r, c in cells])
                vals = torch.stack([v[n, :, r, c] for r, c in cells])
                a = torch.softmax(keys @ q[n, :, i, j], dim=0)
                expected[n, :, i, j] += m.gamma * (a @ vals)
    torch.testing.assert_close(m(x), expected)


def test_criss_cross_default_recurrence_is_two_and_query_width_is_c_over_8():
    m = create("cc", 64)
    assert m.recurrence == 2 and m.query.out_channels == 8 and m.value.out_channels == 64


def test_criss_cross_gate_normalises_over_h_plus_w_positions_with_self_counted_once():
    _, a = capture(randomise_(create("cc", 16, recurrence=1)).eval(), torch.randn(1, 16, 4, 6))
    assert a.shape == (1, 4, 6, 4 + 6)
    torch.testing.assert_close(a.sum(-1), torch.ones(1, 4, 6))
    # the column part gives (i, j) itself no weight: it is counted in the row part
    col = a[..., :4]
    assert (col.diagonal(dim1=1, dim2=3) == 0).all()


# ---- DANet ---------------------------------------------------------------------------------------------


def test_danet_matches_the_position_and_channel_attention_equations():
    torch.manual_seed(0)
    m = randomise_(create("danet", 16)).double()
    x = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    a = x.flatten(2)
    bq, ck, dv = m.query(x).flatten(2), m.key(x).flatten(2), m.value(x).flatten(2)
    s = torch.softmax(torch.einsum("bci,bcj->bij", bq, ck), dim=-1)  # s[i, j]: position j's effect on i
    pam = torch.einsum("bcj,bij->bci", dv, s)
    e = torch.einsum("bin,bjn->bij", a, a)
    xc = torch.softmax(e.amax(-1, keepdim=True) - e, dim=-1)  # official CAM form
    cam = torch.einsum("bij,bjn->bin", xc, a)
    expected = a + m.gamma_pos * pam + m.gamma_ch * cam
    torch.testing.assert_close(m(x), expected.reshape(x.shape))


def test_danet_query_width_is_c_over_8():
    m = create("danet", 64)
    assert m.query.out_channels == 8 and m.value.out_channels == 64


# ---- A² double attention -------------------------------------------------------------------------------


def test_a2_matches_gather_then_distribute_equations():
    torch.manual_seed(0)
    m = randomise_(create("a2", 16)).double()
    x = torch.randn(2, 16, 4, 3, dtype=torch.float64)
    feats = m.conv_a(x).flatten(2)  # (B, m, N)
    maps = torch.softmax(m.conv_b(x).flatten(2), dim=2)  # each map sums to 1 over positions
    gathered = torch.einsum("bmn,bkn->bmk", feats, maps)  # (B, m, n descriptors)
    weights = torch.softmax(m.conv_v(x).flatten(2), dim=1)  # each position: sums to 1 over descriptors
    z = torch.einsum("bmk,bkn->bmn", gathered, weights)
    torch.testing.assert_close(m(x), x + m.proj(z.reshape(2, -1, 4, 3)))


def test_a2_default_widths_are_c_over_4_and_descriptors_can_be_set():
    m = create("a2", 64)
    assert m.conv_a.out_channels == 16 and m.conv_b.out_channels == 16 and m.conv_v.out_channels == 16
    m = create("a2", 64, descriptors=5)
    assert m.conv_b.out_channels == 5 and m.conv_v.out_channels == 5


# ---- BAT -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 64, 14, 21), (2, 32, 7, 7), (1, 48, 28, 14)], ids=["14x21", "7x7", "28x14"])
def test_bat_matches_timm_batnonlocalattn_with_copied_weights(shape):
    c = shape[1]
    ref = randomise_(BatNonLocalAttn(c), std=0.5).eval()
    ours = create("bat", c).eval()
    load_weights(ours, ref, BAT_KEYS)
    x = torch.randn(*shape)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


def test_bat_matches_timm_in_train_mode_without_dropout():
    ref = randomise_(BatNonLocalAttn(32, drop_rate=0.0), std=0.5).train()
    ours = create("bat", 32, drop_rate=0.0).train()
    load_weights(ours, ref, BAT_KEYS)
    x = torch.randn(2, 32, 14, 7)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [1, 3, 7, 10, 20, 60])
def test_bat_pooling_equals_adaptive_max_pool_for_any_size(size):
    x = torch.randn(2, 3, size, size + 2)
    torch.testing.assert_close(_adaptive_max_bins(x, 7, dim=2), F.adaptive_max_pool2d(x, (7, size + 2)))


@pytest.mark.parametrize("hw", [(10, 9), (3, 16), (1, 1)], ids=["10x9", "3x16", "1x1"])
def test_bat_on_sizes_not_divisible_by_block_size_is_the_kronecker_transform_on_the_zero_padded_map(hw):
    # timm only accepts multiples of block_size; the extension pads with zeros and crops
    m = randomise_(create("bat", 16, block_size=7, groups=2)).double()
    h, w = hw
    s = 7
    z = torch.randn(2, 8, h, w, dtype=torch.float64)
    p = torch.softmax(torch.randn(2, 2, s, s, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(2, 2, s, s, dtype=torch.float64), -2)
    th, tw = -(-h // s), -(-w // s)
    zp = F.pad(z, (0, tw * s - w, 0, th * s - h)).reshape(2, 2, 4, th * s, tw * s)
    big_p = torch.stack(
        [torch.stack([torch.kron(p[b, g], torch.eye(th, dtype=z.dtype)) for g in range(2)]) for b in range(2)]
    )
    big_q = torch.stack(
        [torch.stack([torch.kron(q[b, g], torch.eye(tw, dtype=z.dtype)) for g in range(2)]) for b in range(2)]
    )
    expected = (big_p[:, :, None] @ zp @ big_q[:, :, None]).reshape(2, 8, th * s, tw * s)[:, :, :h, :w]
    torch.testing.assert_close(m._bilinear(z, p, q), expected)


def test_bat_gate_gives_row_and_column_stochastic_mixing_matrices():
    _, w = capture(randomise_(create("bat", 32)).eval(), torch.randn(2, 32, 9, 12))
    assert w.shape == (2, 2, 2, 7, 7)  # (B, P|Qᵀ, groups, s, s)
    assert (w > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 2, 7))


# ---- gates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape"),
    [("nl", (2, 30, 30)), ("nonlocal", (2, 30, 30)), ("danet", (2, 30, 30)), ("a2", (2, 4, 30))],
)
def test_gate_hook_sees_softmax_weights_that_sum_to_one(name, shape):
    _, a = capture(randomise_(create(name, 16)).eval(), torch.randn(2, 16, 5, 6))
    assert a.shape == shape
    torch.testing.assert_close(a.sum(-1), torch.ones(shape[:-1]))


# ---- memory guard and bad hyper-parameters -------------------------------------------------------------


def test_nonlocal_attention_at_80x80_is_156_mib_and_the_limit_is_checked_before_allocation():
    # the meta device computes shapes without allocating: the guard must refuse before any real tensor.
    # Unobserved, the fused kernel never builds the matrix; observed (capture_attention), it is checked.
    x = torch.empty(1, 256, 80, 80, device="meta")
    assert create("nonlocal", 256, memory_limit_mb=156).to("meta")(x).shape == x.shape
    with pytest.raises(ValueError, match=r"memory_limit_mb") as err:
        m = create("nonlocal", 256, memory_limit_mb=156).to("meta")
        m.capture_attention = True
        m(x)
    assert "156 MiB" in str(err.value)
    for kwargs in ({"memory_limit_mb": 157}, {"sub_sample": True, "memory_limit_mb": 40}):
        m = create("nonlocal", 256, **kwargs).to("meta")
        m.capture_attention = True
        assert m(x).shape == x.shape


def test_danet_checks_the_memory_limit_when_observed_and_none_disables_it():
    x = torch.randn(2, 8, 16, 16)
    m = create("danet", 8, memory_limit_mb=0.1)
    assert m(x).shape == x.shape  # fused kernel: no 256x256 matrix
    m.capture_attention = True
    with pytest.raises(ValueError, match="memory_limit_mb"):
        m(x)
    m = create("danet", 8, memory_limit_mb=None)
    m.capture_attention = True
    assert m(x).shape == x.shape


@pytest.mark.parametrize(
    ("name", "kwargs", "param"),
    [
        ("cc", {"recurrence": 0}, "recurrence"),
        ("bat", {"block_size": 0}, "block_size"),
        ("bat", {"groups": 3}, "groups"),
        ("bat", {"drop_rate": 1.5}, "drop_rate"),
        ("nonlocal", {"memory_limit_mb": -1}, "memory_limit_mb"),
        ("nonlocal", {"rd_ratio": 0}, "rd_ratio"),
        ("danet", {"rd_channels": 0}, "rd_channels"),
        ("a2", {"descriptors": 0}, "descriptors"),
    ],
)
def test_bad_hyperparameter_raises_value_error_naming_it(name, kwargs, param):
    with pytest.raises(ValueError, match=param):
        create(name, 32, **kwargs)
