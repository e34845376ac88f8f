"""Registration into Ultralytics, the parse_model hook, building, checkpoints, and one-line build errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from graph_helpers import FIXTURES, n_params
from torch import nn

import attnyolo
import attnyolo.graph as g
from attnyolo import registry
from attnyolo.graph import adapter as ay_adapter
from attnyolo.graph import ultralytics as ay_ultra
from attnyolo.graph.layers import layers


@pytest.fixture(scope="module")
def tasks():
    import ultralytics.nn.tasks as tasks

    g.register()
    return tasks


def test_register_is_idempotent_and_wraps_parse_model_once(tasks):
    hook = tasks.parse_model
    g.register()
    g.register()
    assert tasks.parse_model is hook
    assert not hasattr(hook.__wrapped__, "__wrapped__")  # the original, not a wrapper of a wrapper


def test_every_zoo_name_resolves_in_ultralytics_namespace_under_a_prefix_it_never_uses(tasks):
    ours = {k for k, v in vars(tasks).items() if k.startswith("ay_")}
    assert ours == {ay_adapter.class_name(n) for n in attnyolo.available()}
    assert all(issubclass(getattr(tasks, k), ay_adapter.AttentionLayer) for k in ours)
    ultralytics_own = {k for k, v in vars(tasks).items() if isinstance(v, type) and k not in ours}
    assert {"Detect", "C2f", "PSA"} <= ultralytics_own  # sanity: their namespace is the one inspected
    assert not any(k.lower().startswith("ay_") for k in ultralytics_own)


def test_adapter_reads_ultralytics_own_channel_count():
    cfg, _ = g.insert("yolov8s.yaml", "cbam", where=[15])
    model = g.build(cfg)
    layer = model.model[16]
    assert type(layer).__name__ == "ay_cbam" and layer.channels == model.model[15].cv2.conv.out_channels == 128


def test_built_model_keeps_the_clean_rows_and_the_record_in_model_yaml():
    cfg, _ = g.insert("yolov8n.yaml", "cbam", rd_ratio=0.25)
    model = g.build(cfg)
    assert model.yaml["head"] == cfg["head"] and model.yaml["backbone"] == cfg["backbone"]
    assert model.yaml["attnyolo"] == cfg["attnyolo"]
    assert cfg["head"][6] == [-1, 1, "ay_cbam", [{"rd_ratio": 0.25}]]


def test_hparams_reach_the_zoo_module():
    cfg, _ = g.insert("yolov8n.yaml", "se", where=[15], rd_ratio=0.5)
    model = g.build(cfg)
    assert n_params(model.model[16].attn) == n_params(attnyolo.create("se", 64, rd_ratio=0.5))


def test_yolo_class_builds_an_edited_yaml_file(tmp_path):
    from ultralytics import YOLO

    cfg, _ = g.insert("yolov8n.yaml", "eca")
    path = tmp_path / "yolov8n-eca.yaml"
    g.dump(cfg, path)
    model = YOLO(str(path))
    assert [type(m).__name__ for m in model.model.model[16:25:4]] == ["ay_eca"] * 3


def test_without_the_hook_the_adapter_says_how_to_fix_it(tasks):
    cfg, _ = g.insert("yolov8n.yaml", "eca")
    with pytest.raises(g.BuildError, match="call attnyolo.register"):
        tasks.parse_model.__wrapped__(cfg, ch=3, verbose=False)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("yolov8n.yaml", "DetectionModel"),
        ("yolov8n-seg.yaml", "SegmentationModel"),
        ("yolo11n-pose.yaml", "PoseModel"),
        ("yolo11n-obb.yaml", "OBBModel"),
        ("yolov8n-cls.yaml", "ClassificationModel"),
        ("yolov8s-worldv2.yaml", "WorldModel"),
        ("rtdetr-l.yaml", "RTDETRDetectionModel"),
    ],
)
def test_build_returns_the_task_model_class(name, cls):
    assert ay_ultra.model_class(g.load(name)).__name__ == cls


def test_build_overrides_the_class_count():
    model = g.build(g.insert("yolov8n.yaml", "eca")[0], nc=3)
    assert model.model[-1].nc == 3 and model.yaml["nc"] == 3


def test_build_does_not_modify_its_input():
    cfg, _ = g.insert("yolov8n.yaml", "eca")
    before = repr(cfg)
    g.build(cfg, nc=3, scale="s")
    assert repr(cfg) == before


def test_one_edited_yaml_builds_at_every_scale_with_the_right_channels():
    cfg, _ = g.insert("yolov8n.yaml", "se", where=[21])
    widths = {}
    for scale in ("n", "s", "m"):
        widths[scale] = g.build(cfg, scale=scale).model[22].channels
    # C2f [1024] with (width, max_channels) n (0.25, 1024), s (0.5, 1024), m (0.75, 768)
    assert widths == {"n": 256, "s": 512, "m": 576}


def test_unknown_module_in_a_hand_made_yaml_is_a_one_line_build_error():
    with pytest.raises(g.BuildError, match=r"layer 16: module 'CBAM' is neither .*did you mean .*ay_cbam") as e:
        g.build(FIXTURES / "yolov8-cbam-community.yaml")
    assert "\n" not in str(e.value)


def test_unknown_scale_is_refused():
    with pytest.raises(g.ScaleError, match="unknown scale 'q'; this YAML defines n, s, m, l, x"):
        g.build("yolov8.yaml", scale="q")
    with pytest.raises(g.ScaleError, match="no 'scales'"):
        g.insert("yolov9t.yaml", "se", scale="s")


class _Grow(nn.Module):
    """A fake 'attention' that doubles the channels: must be refused as not shape-preserving."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 1)

    def forward(self, x):
        return self.conv(x)


class _Triple(nn.Module):
    """A fake attention that needs channels divisible by 3 (no YOLO width is)."""

    def __init__(self, channels: int):
        super().__init__()
        if channels % 3:
            raise ValueError(f"channels={channels} must be divisible by 3")

    def forward(self, x):
        return x


class _Clip(nn.Module):
    """A fake temporal module."""

    def __init__(self, channels: int, frames: int | None = None):
        super().__init__()
        self.frames = frames

    def forward(self, x):
        return x


@pytest.fixture
def fake_zoo(monkeypatch):
    registry._load_zoo()
    for name, cls, extra in (
        ("t_grow", _Grow, {}),
        ("t_triple", _Triple, {}),
        ("t_clip", _Clip, {"needs_frames": True}),
    ):
        spec = registry.ModuleSpec(name=name, cls=cls, category="channel", paper="test", year=2024, **extra)
        monkeypatch.setitem(registry._REGISTRY, name, spec)


def test_a_module_that_changes_the_shape_is_refused(fake_zoo):
    with pytest.raises(g.ShapeError, match=r"'t_grow' would change the shape \(1, 64, 8, 8\) -> \(1, 128, 8, 8\)"):
        g.insert("yolov8n.yaml", "t_grow", where=[15])


def test_a_channel_constraint_is_reported_with_layer_scale_and_channels(fake_zoo):
    with pytest.raises(g.ShapeError, match=r"layer 16 \(ay_t_triple, scale n\): 't_triple' cannot take 64 channels"):
        g.insert("yolov8n.yaml", "t_triple", where=[15])


def test_a_temporal_module_without_frames_is_refused(fake_zoo):
    with pytest.raises(g.HyperparameterError, match="temporal module: pass frames=T"):
        g.insert("yolov8n.yaml", "t_clip")
    cfg, _ = g.insert("yolov8n.yaml", "t_clip", frames=4)
    assert layers(cfg)[16].args == [{"frames": 4}]


def test_unknown_attention_lists_the_closest_names():
    with pytest.raises(g.UnknownModuleError, match="unknown attention 'cbamm'; did you mean cbam"):
        g.insert("yolov8n.yaml", "cbamm")


def test_unknown_hyperparameter_lists_the_accepted_ones():
    with pytest.raises(g.HyperparameterError, match="'se' has no hyper-parameter 'ratio'; it takes .*rd_ratio"):
        g.insert("yolov8n.yaml", "se", ratio=4)


def test_an_attention_after_a_multi_tensor_layer_is_refused():
    with pytest.raises(g.ShapeError, match=r"layer 10 \(CBLinear\) does not output one feature map"):
        g.insert("yolov9e.yaml", "se", where=[10])


def _run(code: str, tmp_path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "YOLO_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "edited.pt"
    cfg, _ = g.insert("yolov8n.yaml", ["cbam", "eca"])
    model = g.build(cfg, nc=3)
    torch.save({"model": model}, path)
    with torch.no_grad():
        expected = model.eval()(torch.ones(1, 3, 64, 64))[0]
    return path, expected


def test_checkpoint_loads_in_a_fresh_process_that_never_imported_attnyolo(saved_checkpoint, tmp_path):
    path, expected = saved_checkpoint
    torch.save(expected, tmp_path / "expected.pt")
    result = _run(
        f"""
        import sys, torch
        from ultralytics.nn.tasks import torch_safe_load
        ckpt, _ = torch_safe_load({str(path)!r})
        model = ckpt["model"].eval()
        assert "attnyolo" in sys.modules  # unpickling imported it to find ay_cbam
        assert type(model.model[16]).__name__ == "ay_cbam"
        torch.testing.assert_close(model(torch.ones(1, 3, 64, 64))[0], torch.load("expected.pt"))
        print("ok")
        """,
        tmp_path,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def _safe_load_in_a_fresh_process(path, tmp_path, *, register_first: bool) -> subprocess.CompletedProcess:
    """Ultralytics' weights-only loader on ``path`` in a new interpreter, after ``attnyolo.graph.register()`` or
    without it; prints the class name of layer 17."""
    register = "import attnyolo, attnyolo.graph; attnyolo.graph.register()" if register_first else ""
    return _run(
        f"""
        {register}
        from ultralytics.nn.tasks import torch_safe_load
        ckpt, _ = torch_safe_load({str(path)!r}, safe_only=True)
        print(type(ckpt["model"].model[17]).__name__)
        """,
        tmp_path,
    )


def test_safe_weights_only_loading_accepts_the_zoo_after_import_attnyolo(saved_checkpoint, tmp_path):
    result = _safe_load_in_a_fresh_process(saved_checkpoint[0], tmp_path, register_first=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("ay_eca"), result.stderr[-2000:]


def test_safe_loading_without_registration_fails_with_ultralytics_clear_error(saved_checkpoint, tmp_path):
    result = _safe_load_in_a_fresh_process(saved_checkpoint[0], tmp_path, register_first=False)
    assert result.returncode != 0 and "references types outside the supported" in result.stderr


# ---- the adapter's identity-start arithmetic -------------------------------------------------------------------
# ``se``, ``eca``, ``sam`` declare ``attn(x) = x * s`` (gamma applied to s); ``cbam``, ``scse`` go through lerp.
GAMMA_MODULES = ["se", "eca", "sam", "cbam", "scse"]


def _adapter(name: str, gamma: float, channels: int = 16) -> nn.Module:
    layer = ay_adapter.adapter_class(name)([channels], -1).eval()
    assert layer.start == "gamma"
    with torch.no_grad():
        for p in layer.attn.parameters():  # away from the init, so every term matters
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        layer.gamma.fill_(gamma)
    return layer


@pytest.mark.parametrize("name", GAMMA_MODULES)
@pytest.mark.parametrize("gamma", [0.3, 0.8])
def test_adapter_output_is_x_plus_gamma_times_attention_minus_x(name, gamma):
    layer = _adapter(name, gamma)
    x = torch.randn(2, 16, 6, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = x + gamma * (layer.attn(x) - x)  # the definition, in three passes
        torch.testing.assert_close(layer(x), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", GAMMA_MODULES)
def test_adapter_at_gamma_one_is_the_module_bit_for_bit(name):
    layer = _adapter(name, 1.0)
    x = torch.randn(1, 16, 5, 9, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(layer(x), layer.attn(x))


@pytest.mark.parametrize("name", ["se", "cbam"])
def test_adapter_gradients_equal_those_of_the_three_pass_formula(name):
    layer = _adapter(name, 0.4).train()
    x = torch.randn(2, 16, 6, 7, generator=torch.Generator().manual_seed(3))

    def grads(out: torch.Tensor) -> list[torch.Tensor]:
        layer.zero_grad(set_to_none=True)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        return [p.grad.clone() for p in layer.parameters()]

    fused = grads(layer(x))
    three_pass = grads(x + layer.gamma * (layer.attn(x) - x))
    for a, b in zip(fused, three_pass, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adapter_output_keeps_a_channels_last_input_layout():
    layer = _adapter("cbam", 0.5)
    x = torch.randn(1, 16, 6, 7).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert layer(x).is_contiguous(memory_format=torch.channels_last)


def test_a_module_pickled_when_softmax_gate_lived_in_self_attention_loads_with_weights_only(monkeypatch):
    import collections
    import io

    from attnyolo.attention import _attention
    from attnyolo.attention.self_attention import SAGANAttention

    ay_ultra.register()
    buf = io.BytesIO()
    with monkeypatch.context() as m:  # pickle the gate under its old path, as checkpoints written then did
        m.setattr(_attention.SoftmaxGate, "__module__", "attnyolo.attention.self_attention")
        torch.save(SAGANAttention(8), buf)
    assert b"attnyolo.attention.self_attention" in buf.getvalue()
    buf.seek(0)
    with torch.serialization.safe_globals([nn.Conv2d, collections.OrderedDict, set]):
        loaded = torch.load(buf, weights_only=True)
    assert type(loaded.gate) is _attention.SoftmaxGate


def test_a_hook_on_a_scaling_module_still_sees_its_output_through_the_adapter():
    layer = _adapter("se", 0.5)
    seen = []
    layer.attn.register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = torch.randn(1, 16, 5, 5)
    with torch.no_grad():
        y = layer(x)
    assert len(seen) == 1
    torch.testing.assert_close(y, x + 0.5 * (seen[0] - x))


def test_inference_writes_into_the_modules_output_but_never_into_the_input():
    layer = _adapter("cbam", 0.5)
    x = torch.randn(1, 16, 6, 7, generator=torch.Generator().manual_seed(4))
    x0 = x.clone()
    with torch.no_grad():
        want = x + 0.5 * (layer.attn(x) - x)
    with torch.inference_mode():
        got = layer(x)
    assert torch.equal(x, x0)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_adapter_promotes_when_the_module_returns_another_dtype():
    layer = _adapter("cbam", 0.5)
    layer.attn.forward = lambda x: x.float() * 2  # an instance override: a module that upcasts its output
    x = torch.randn(1, 16, 4, 4).half()
    with torch.no_grad():
        y = layer(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, x.float() * 1.5)
