"""Temporal and spatial-temporal modules over clips ``(B*T, C, H, W)``: tam, tmhsa, gltr, stnl, divided_st.

References: the official TAM algorithm (grouped ``conv2d`` over all clips) written out with the same weights;
``torch.nn.MultiheadAttention`` with the same weights for the attention layers; GLTR's sequence-level
``Conv1d`` pyramid and attention applied to every position's sequence; the image non-local block on the
clip's frames tiled side by side for the space-time non-local block.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from attention_helpers import capture, randomise_
from torch import nn

from attnyolo.attention.spatial_temporal import DividedSpaceTimeAttention, SpaceTimeNonLocal
from attnyolo.attention.temporal import GLTR, TAM, TemporalMHSA
from attnyolo.registry import available, create, describe

TEMPORAL = ["tam", "tmhsa", "gltr"]
SPATIAL_TEMPORAL = ["stnl", "divided_st"]
ALL = TEMPORAL + SPATIAL_TEMPORAL


# ---- helpers -------------------------------------------------------------------------------------------


def clip_batch(clips: int, frames: int, c: int, h: int, w: int, dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(clips * frames, c, h, w, generator=g, dtype=dtype)


def positions_as_sequences(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B*T, C, H, W)`` -> ``(B*H*W, T, C)``: the frame sequence of every position."""
    bt, c, h, w = x.shape
    return x.reshape(bt // frames, frames, c, h * w).permute(0, 3, 1, 2).reshape(-1, frames, c)


def sequences_as_positions(s: torch.Tensor, frames: int, h: int, w: int) -> torch.Tensor:
    n, _, c = s.shape
    return s.reshape(n // (h * w), h * w, frames, c).permute(0, 2, 3, 1).reshape(-1, c, h, w)


def mha_with_weights(qkv: nn.Linear, proj: nn.Linear, heads: int) -> nn.MultiheadAttention:
    c = proj.in_features
    mha = nn.MultiheadAttention(c, heads, batch_first=True, dtype=qkv.weight.dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(qkv.weight)
        mha.in_proj_bias.copy_(qkv.bias)
        mha.out_proj.weight.copy_(proj.weight)
        mha.out_proj.bias.copy_(proj.bias)
    return mha.eval()


# ---- registry ------------------------------------------------------------------------------------------


def test_names_are_registered_in_their_categories_and_need_frames():
    assert set(TEMPORAL) <= set(available("temporal"))
    assert set(SPATIAL_TEMPORAL) <= set(available("spatial_temporal"))
    assert all(describe(n).needs_frames for n in ALL)


# ---- TAM -----------------------------------------------------------------------------------------------


def official_tam(m: TAM, x: torch.Tensor) -> torch.Tensor:
    """The official TAM forward (liu-zhy/temporal-adaptive-module), with ``m``'s weights in its layout."""
    t, k = m.frames, m.kernel_size
    G = nn.Sequential(m.kernel_mlp[0], m.kernel_mlp[1], nn.ReLU(), m.kernel_mlp[3], nn.Softmax(-1))
    L = nn.Sequential(m.local[0], m.local[1], nn.ReLU(), m.local[3], nn.Sigmoid())
    nt, c, h, w = x.shape
    n = nt // t
    clip = x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4)
    pooled = F.adaptive_avg_pool2d(clip.reshape(n * c, t, h, w), (1, 1)).view(-1, t)
    kernel = G(pooled).view(n * c, 1, k, 1)
    local = L(pooled.view(n, c, t)).view(n, c, t, 1, 1)
    y = F.conv2d((clip * local).reshape(1, n * c, t, h * w), kernel, padding=(k // 2, 0), groups=n * c)
    return y.view(n, c, t, h, w).permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(("frames", "kernel_size"), [(4, 3), (3, 5), (2, 3)])
def test_tam_matches_the_official_grouped_conv_algorithm(frames, kernel_size, mode):
    m = randomise_(create("tam", 16, frames=frames, kernel_size=kernel_size)).train(mode == "train")
    x = clip_batch(2, frames, 16, 5, 3)
    torch.testing.assert_close(m(x), official_tam(m, x), atol=1e-5, rtol=1e-5)


def test_tam_defaults_follow_the_paper():
    m = create("tam", 64, frames=8)
    assert m.kernel_size == 3  # K
    assert m.local[0].out_channels == 64 // 4  # beta = 4
    assert m.kernel_mlp[0].out_features == 8 * 2  # alpha = 2
    assert m.kernel_mlp[3].out_features == 3


def test_tam_gates_are_an_importance_map_and_normalised_kernels():
    m = randomise_(create("tam", 16, frames=4)).eval()
    _, importance, kernel = capture(m, clip_batch(2, 4, 16, 3, 3), "gate", "kernel_gate")
    assert importance.shape == (2, 16, 4)
    assert ((importance > 0) & (importance < 1)).all()
    assert kernel.shape == (2 * 16, 3)
    torch.testing.assert_close(kernel.sum(-1), torch.ones(32))


# ---- temporal MHSA -------------------------------------------------------------------------------------


def test_sinusoidal_frame_encoding_is_vaswanis():
    m = create("tmhsa", 8, frames=5)
    expected = torch.zeros(5, 8)
    for t in range(5):
        for i in range(4):
            angle = t / 10000 ** (2 * i / 8)
            expected[t, 2 * i], expected[t, 2 * i + 1] = math.sin(angle), math.cos(angle)
    torch.testing.assert_close(m.pos, expected)


@pytest.mark.parametrize("heads", [1, 4])
def test_tmhsa_matches_torch_multihead_attention_across_frames(heads):
    frames = 3
    m = randomise_(create("tmhsa", 16, frames=frames, heads=heads)).eval().double()
    x = clip_batch(2, frames, 16, 4, 5, dtype=torch.float64)
    tokens = positions_as_sequences(x, frames)
    u = m.norm(tokens) + m.pos.double()
    attn, _ = mha_with_weights(m.qkv, m.proj, heads)(u, u, u)
    expected = sequences_as_positions(tokens + m.gamma * attn, frames, 4, 5)
    torch.testing.assert_close(m(x), expected)


def test_tmhsa_gate_is_a_softmax_over_frames_per_position_and_head():
    _, a = capture(randomise_(create("tmhsa", 16, frames=3)).eval(), clip_batch(2, 3, 16, 4, 5))
    assert a.shape == (2 * 4 * 5, 4, 3, 3)
    torch.testing.assert_close(a.sum(-1), torch.ones(40, 4, 3))


# ---- GLTR ----------------------------------------------------------------------------------------------


def _conv1d(conv3d: nn.Conv3d, dilation: int = 1) -> nn.Conv1d:
    k = conv3d.kernel_size[0]
    conv = nn.Conv1d(
        conv3d.in_channels,
        conv3d.out_channels,
        k,
        padding=dilation * (k // 2),
        dilation=dilation,
        bias=conv3d.bias is not None,
        dtype=conv3d.weight.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(conv3d.weight[..., 0, 0])
        if conv.bias is not None:
            conv.bias.copy_(conv3d.bias)
    return conv


def _bn1d(bn3d: nn.BatchNorm3d) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(bn3d.num_features, dtype=bn3d.weight.dtype)
    bn.load_state_dict(bn3d.state_dict())
    return bn.train(bn3d.training)


def sequence_gltr(m: GLTR, x: torch.Tensor, dilations=(1, 2, 4)) -> torch.Tensor:
    """GLTR's sequence-level DTP and TSA (Conv1d over frames) run on every position's frame sequence."""
    frames = m.frames
    _, c, h, w = x.shape
    seq = positions_as_sequences(x, frames).transpose(1, 2)  # (B*H*W, C, T)
    f = torch.cat([_conv1d(conv, d)(seq) for conv, d in zip(m.pyramid, dilations, strict=True)], dim=1)  # DTP
    q = torch.relu(_bn1d(m.query[1])(_conv1d(m.query[0])(f)))
    k = torch.relu(_bn1d(m.key[1])(_conv1d(m.key[0])(f)))
    v = _conv1d(m.value)(f)
    attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (N, T, T): frame t reads frames s
    f = f + _conv1d(m.out)(v @ attn.transpose(1, 2))  # TSA
    y = _bn1d(m.norm)(_conv1d(m.fuse)(f))
    return x + sequences_as_positions(y.transpose(1, 2), frames, h, w)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("frames", [2, 5])
def test_gltr_is_the_sequence_level_pyramid_and_attention_at_every_position(frames, mode):
    m = randomise_(create("gltr", 8, frames=frames)).double().train(mode == "train")
    x = clip_batch(2, frames, 8, 3, 4, dtype=torch.float64)
    expected = sequence_gltr(m, x)
    torch.testing.assert_close(m(x), expected)


def test_gltr_defaults_follow_the_paper():
    m = create("gltr", 32, frames=4)
    assert [c.dilation[0] for c in m.pyramid] == [1, 2, 4]
    assert all(c.out_channels == 32 for c in m.pyramid)  # each branch keeps d
    assert m.query[0].out_channels == 3 * 32 // 2  # alpha = 2


# ---- space-time non-local ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("sub_sample", [True, False])
def test_stnl_equals_the_image_block_on_the_clip_frames_tiled_side_by_side(sub_sample, mode):
    # attention over all T*H*W positions of a clip = image attention over the frames laid side by side
    # (W even: the 2x2 pooling windows never straddle two frames)
    frames, c, h, w = 3, 8, 5, 4
    st = randomise_(create("stnl", c, frames=frames, sub_sample=sub_sample)).train(mode == "train")
    img = create("nonlocal", c, sub_sample=sub_sample).train(mode == "train")
    img.load_state_dict(st.state_dict())
    x = clip_batch(2, frames, c, h, w)
    tiled = x.reshape(2, frames, c, h, w).permute(0, 2, 3, 1, 4).reshape(2, c, h, frames * w)
    expected = img(tiled).reshape(2, c, h, frames, w).permute(0, 3, 1, 2, 4).reshape(-1, c, h, w)
    torch.testing.assert_close(st(x), expected, atol=1e-5, rtol=1e-5)


def test_stnl_gate_attends_over_every_position_of_the_clip():
    _, a = capture(randomise_(create("stnl", 8, frames=3, sub_sample=True)).eval(), clip_batch(2, 3, 8, 4, 6))
    assert a.shape == (2, 3 * 4 * 6, 3 * 2 * 3)  # keys pooled 2x2 in space only
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 72))


def test_stnl_default_limit_refuses_an_eight_frame_clip_at_80x80_before_allocating():
    # (8*6400) x (8*1600) fp32 = 2500 MiB > 2048; four frames: 625 MiB
    # (the limit applies to the explicit matrix, built only when the weights are observed)
    m = create("stnl", 256, frames=8).to("meta")
    assert m(torch.empty(8, 256, 80, 80, device="meta")).shape == (8, 256, 80, 80)  # fused: no matrix
    m.capture_attention = True
    with pytest.raises(ValueError, match="memory_limit_mb"):
        m(torch.empty(8, 256, 80, 80, device="meta"))
    m = create("stnl", 256, frames=4).to("meta")
    m.capture_attention = True
    assert m(torch.empty(4, 256, 80, 80, device="meta")).shape == (4, 256, 80, 80)


# ---- divided space-time attention ----------------------------------------------------------------------


def test_divided_st_is_temporal_then_spatial_multihead_attention():
    frames, c, h, w, heads = 3, 16, 3, 4, 4
    m = randomise_(create("divided_st", c, frames=frames, heads=heads)).eval().double()
    x = clip_batch(2, frames, c, h, w, dtype=torch.float64)
    tokens = positions_as_sequences(x, frames)  # (B*H*W, T, C)
    u = m.time_norm(tokens)
    attn, _ = mha_with_weights(m.time_qkv, m.time_proj, heads)(u, u, u)
    y = sequences_as_positions(tokens + m.time_fc(attn), frames, h, w)  # (B*T, C, H, W)
    frame_tokens = y.flatten(2).transpose(1, 2)  # (B*T, H*W, C)
    u = m.space_norm(frame_tokens)
    attn, _ = mha_with_weights(m.space_qkv, m.space_proj, heads)(u, u, u)
    expected = (frame_tokens + attn).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(m(x), expected)


def test_divided_st_temporal_step_starts_as_the_identity():
    # temporal_fc is zero-initialised (official TimeSformer): frames do not mix until it learns
    m = create("divided_st", 16, frames=3).eval()
    x = clip_batch(1, 3, 16, 4, 4)
    x2 = x.clone()
    x2[0] += 1.0
    with torch.no_grad():
        assert torch.equal(m(x2)[1:], m(x)[1:])


def test_divided_st_gates_are_spatial_and_temporal_softmaxes():
    m = randomise_(create("divided_st", 16, frames=3)).eval()
    _, space, time = capture(m, clip_batch(2, 3, 16, 4, 5), "gate", "time_gate")
    assert space.shape == (2 * 3, 4, 20, 20)
    assert time.shape == (2 * 20, 4, 3, 3)
    torch.testing.assert_close(space.sum(-1), torch.ones(6, 4, 20))


def test_divided_st_spatial_attention_is_memory_checked():
    # per frame at 80x80: 4 heads x 6400^2 fp32 = 625 MiB; four frames exceed the 2048 MiB default
    # (when the weights are observed: unobserved, the fused kernel never builds the matrices)
    x = torch.empty(4, 256, 80, 80, device="meta")
    m = create("divided_st", 256, frames=4).to("meta")
    assert m(x).shape == x.shape
    m.capture_attention = True
    with pytest.raises(ValueError, match="memory_limit_mb"):
        m(x)
    m = create("divided_st", 256, frames=4, memory_limit_mb=None).to("meta")
    m.capture_attention = True
    assert m(x).shape == x.shape


# ---- what every clip module guarantees -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["tmhsa", "gltr", "stnl", "divided_st"])
def test_fused_attention_equals_the_explicit_weights_seen_through_gate(name):
    # unobserved, the softmax attention runs in the fused kernel; a hook on gate makes it explicit
    m = randomise_(create(name, 16, frames=3)).eval()
    x = clip_batch(2, 3, 16, 4, 5)
    with torch.no_grad():
        fused = m(x)
    explicit, weights = capture(m, x)
    torch.testing.assert_close(explicit, fused, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


@pytest.mark.parametrize("name", ["tmhsa", "gltr", "stnl"])
def test_zero_initialised_modules_start_as_the_identity(name):
    m = create(name, 16, frames=2).train()
    x = clip_batch(2, 2, 16, 4, 6)
    assert torch.equal(m(x), x)


@pytest.mark.parametrize("name", ALL)
def test_changing_one_frame_changes_the_other_frames_of_its_clip(name):
    frames = 3
    m = randomise_(create(name, 16, frames=frames), std=0.1).eval().double()
    x = clip_batch(2, frames, 16, 4, 6, dtype=torch.float64)
    x2 = x.clone()
    x2[0] += torch.randn(16, 4, 6, dtype=torch.float64)  # frame 0 of clip 0
    with torch.no_grad():
        diff = (m(x2) - m(x)).abs().flatten(1).amax(1)
    assert (diff[1:frames] > 0).all(), f"frames 1..{frames - 1} of clip 0 did not change: {diff[:frames]}"


@pytest.mark.parametrize("name", ALL)
def test_clips_in_one_batch_never_mix(name):
    # eval mode: in train mode BatchNorm's batch statistics couple every sample of the batch, by design
    frames = 3
    m = randomise_(create(name, 16, frames=frames)).eval()
    x = clip_batch(2, frames, 16, 4, 6)
    x2 = x.clone()
    x2[:frames] = torch.randn(frames, 16, 4, 6)  # a different clip 0
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    assert not torch.equal(y[:frames], y2[:frames])
    assert torch.equal(y[frames:], y2[frames:]), "clip 1's output depends on clip 0"


# ---- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_batch_not_divisible_by_frames_raises_value_error_naming_frames(name):
    m = create(name, 16, frames=3)
    with pytest.raises(ValueError, match="frames=3"):
        m(torch.randn(4, 16, 5, 5))


@pytest.mark.parametrize("cls", [TAM, TemporalMHSA, GLTR, SpaceTimeNonLocal, DividedSpaceTimeAttention])
def test_missing_or_bad_frames_raises_value_error_naming_frames(cls):
    with pytest.raises(ValueError, match="frames"):
        cls(16)
    with pytest.raises(ValueError, match="frames"):
        cls(16, frames=0)


@pytest.mark.parametrize("name", ALL)
def test_registry_refuses_a_temporal_module_without_frames(name):
    with pytest.raises(ValueError, match="frames"):
        create(name, 16)


@pytest.mark.parametrize("name", ["tmhsa", "divided_st"])
def test_heads_not_dividing_channels_raises_value_error_naming_heads_and_channels(name):
    with pytest.raises(ValueError, match=r"channels=30 .*heads=4"):
        create(name, 30, frames=2, heads=4)
    with pytest.raises(ValueError, match="heads"):
        create(name, 32, frames=2, heads=0)


@pytest.mark.parametrize(
    ("name", "kwargs", "param"),
    [
        ("tam", {"alpha": 0}, "alpha"),
        ("tam", {"beta": 0}, "beta"),
        ("tam", {"kernel_size": 4}, "kernel_size"),
        ("gltr", {"dilations": ()}, "dilations"),
        ("gltr", {"dilations": (1, 0)}, "dilations"),
        ("gltr", {"attn_ratio": 0}, "attn_ratio"),
        ("stnl", {"memory_limit_mb": 0}, "memory_limit_mb"),
        ("divided_st", {"memory_limit_mb": -5}, "memory_limit_mb"),
    ],
)
def test_bad_hyperparameter_raises_value_error_naming_it(name, kwargs, param):
    with pytest.raises(ValueError, match=param):
        create(name, 16, frames=2, **kwargs)


@pytest.mark.parametrize("name", ["tam", "tmhsa", "gltr", "stnl", "divided_st"])
def test_one_frame_clip_trains_at_batch_one(name):
    # In a detector a temporal module sees frames=1; a batch of one image must still train.
    module = create(name, 16, frames=1).train()
    x = torch.randn(1, 16, 5, 4, requires_grad=True)
    y = module(x)
    y.sum().backward()
    assert y.shape == x.shape and torch.isfinite(y).all() and x.grad is not None
